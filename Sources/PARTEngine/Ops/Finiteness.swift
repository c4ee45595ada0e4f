/// Finiteness of a whole tensor, for the training run's NaN guard, which checks every
/// gradient and weight after each step.
extension Tensor {
    /// Whether every element is finite (no NaN, no infinity).
    ///
    /// A Float is non-finite exactly when its eight exponent bits are all ones, so the check is
    /// an integer maximum of `bits & 0x7F80_0000` over the elements (which vectorises), split
    /// over the cores. A bf16 tensor is widened first (false when that fails).
    public var allFinite: Bool {
        guard dtype == .f32 else { return (try? converted(to: .f32))?.allFinite ?? false }
        let t = self
        let p = UnsafeRawPointer(t.readPointer).assumingMemoryBound(to: UInt32.self)
        let exponent: UInt32 = 0x7F80_0000
        return Parallel.sum(t.count) { r in
            var m: UInt32 = 0
            for i in r { m = Swift.max(m, p[i] & exponent) }
            return m == exponent ? 1 : 0
        } == 0
    }
}
