/// An error that carries the exit status a command ends with when it stops on it: 64 for a bad
/// argument (the user changes a flag), 1 for a bad file or a failure. The command line's one
/// error printer reads it, so no catch site chooses a status of its own.
public protocol ExitCoded: Error {
    var exitCode: Int32 { get }
}

extension ExitCoded {
    /// The status of a bad argument (`EX_USAGE` of sysexits.h, what swift-argument-parser uses).
    public static var badArgumentStatus: Int32 { 64 }
}

/// An output path a command must not write (`OutputPath.check`), in one sentence naming the
/// flag, the path and what to change: a usage error.
public struct OutputPathError: ExitCoded, CustomStringConvertible, Equatable {
    public let description: String
    public init(_ description: String) { self.description = description }
    public var exitCode: Int32 { Self.badArgumentStatus }
}
