/// Text from a file (a tensor name, a metadata key or value) made safe to quote in a
/// one-line error message: control characters and other invisible scalars are escaped
/// (`\n`, `\u{7F}`), and long text is cut to `limit` characters followed by "...".
///
/// A file may name a tensor "a\nb"; quoting it verbatim would split the message over two lines
/// and let the file print anything on the user's terminal.
public func messageText(_ text: String, limit: Int = 80) -> String {
    var out = ""
    var count = 0
    for scalar in text.unicodeScalars {
        if count == limit { return out + "..." }
        switch scalar {
        case "\n": out += "\\n"
        case "\r": out += "\\r"
        case "\t": out += "\\t"
        case "\\": out += "\\\\"
        default:
            let v = scalar.value
            let invisible = v < 0x20 || (0x7F...0x9F).contains(v) || v == 0x2028 || v == 0x2029
                || (0x202A...0x202E).contains(v) || (0x2066...0x2069).contains(v)
            if invisible {
                out += "\\u{" + String(v, radix: 16, uppercase: true) + "}"
            } else {
                out.unicodeScalars.append(scalar)
            }
        }
        count += 1
    }
    return out
}
