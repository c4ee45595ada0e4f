/// Text from a file (a tensor name, a metadata key or value) made safe to quote in a
/// one-line error message: control characters and other invisible scalars are escaped
/// (`\n`, `\u{7F}`), and long text is cut to `limit` characters followed by "...".
///
/// A file may name a tensor "a\nb"; quoting it verbatim would split the message over two lines
/// and let the file print anything on the user's terminal.
public func messageText(_ text: String, limit: Int = 80) -> String {
    let scalars = Substring(text).unicodeScalars
    let shown = escaping(scalars.prefix(limit), messageEscapes) { scalar in
        let v = scalar.value
        let invisible = v < 0x20 || (0x7F...0x9F).contains(v) || v == 0x2028 || v == 0x2029
            || (0x202A...0x202E).contains(v) || (0x2066...0x2069).contains(v)
        return invisible ? "\\u{" + String(v, radix: 16, uppercase: true) + "}" : nil
    }
    return scalars.count > limit ? shown + "..." : shown
}

private let messageEscapes: [Unicode.Scalar: String] = ["\n": "\\n", "\r": "\\r", "\t": "\\t", "\\": "\\\\"]
