import Foundation

/// `text` with every scalar that `table` names replaced by its entry, and every other scalar for
/// which `other` returns a replacement replaced by that: the one escaping loop behind JSON string
/// literals, HTML text and one-line error messages.
public func escaping(_ text: Substring.UnicodeScalarView, _ table: [Unicode.Scalar: String],
                     other: (Unicode.Scalar) -> String? = { _ in nil }) -> String {
    var out = String.UnicodeScalarView()
    out.reserveCapacity(text.count)
    for scalar in text {
        if let replacement = table[scalar] ?? other(scalar) {
            out.append(contentsOf: replacement.unicodeScalars)
        } else {
            out.append(scalar)
        }
    }
    return String(out)
}

/// `text` as a JSON string literal, quotes included: `"`, `\` and the control characters escaped,
/// everything else (slashes and non-ASCII text included) as it is.
public func jsonStringLiteral(_ text: String) -> String {
    "\"" + escaping(Substring(text).unicodeScalars, jsonEscapes) {
        $0.value < 0x20 ? String(format: "\\u%04x", $0.value) : nil
    } + "\""
}

private let jsonEscapes: [Unicode.Scalar: String] = ["\"": "\\\"", "\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t"]
