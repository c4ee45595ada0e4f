import Foundation

/// The one JSON encoder of every file and line the project writes: sorted keys, and non-finite
/// numbers as the strings "nan", "inf" and "-inf" (JSON has no literal for them), so a diverged
/// value is reported, never a crash.
public enum JSONOutput {
    public static func encoder() -> JSONEncoder {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        encoder.nonConformingFloatEncodingStrategy = .convertToString(positiveInfinity: "inf", negativeInfinity: "-inf",
                                                                      nan: "nan")
        return encoder
    }

    /// `value` as one line of JSON text.
    public static func line<T: Encodable>(_ value: T) throws -> String {
        String(decoding: try encoder().encode(value), as: UTF8.self)
    }
}
