import Foundation

/// A budget or step as people write it: `k/255` when it is one (to float precision), else a
/// short decimal. Used wherever a command prints an eps it did not read as text.
public func budgetText(_ eps: Double) -> String {
    let k = (eps * 255).rounded()
    return abs(eps * 255 - k) < 1e-4 && k > 0 ? "\(Int(k))/255" : String(format: "%.4g", eps)
}
