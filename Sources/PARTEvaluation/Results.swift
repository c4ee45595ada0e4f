import Foundation
import PARTEngine

/// What an evaluation was run with: the first line of its results file. A results file whose
/// header differs from the command is refused, naming the difference (docs/conventions.md#4-the-run-directory).
public struct EvaluationHeader: Codable, Equatable, Sendable {
    public var format = "part-eval-results"
    public var version = 1
    /// The checkpoint as given (informative; its content is compared through the hash).
    public var checkpoint: String
    public var checkpointSHA256: String
    public var architecture: String
    public var normalize: String?
    public var dataset: String
    public var split: String
    /// Number of points: the first `count` of the split.
    public var count: Int
    /// Every stage with its resolved parameters, natural first.
    public var attacks: [String]
    /// The stages' names, the columns of the per-example lines.
    public var columns: [String]
    public var independent: Bool
    public var epsilon: Float
    public var alpha: Float
    public var seed: UInt64
    public var precision: String
    public var batchSize: Int
    /// true when the points are the class-balanced subset of `--balanced` (the first
    /// ceil(count/K) of each class; a line's `index` is its position in it); absent for the first
    /// `count`.
    public var balanced: Bool?
    /// The points' indices in the split, when they are not its first `count` (`--balanced`): the
    /// test images the lines are about, and the keys of their random draws. A file of an older
    /// `part eval --balanced` has none; its draws were keyed by the position, so it is not resumed.
    public var splitIndices: [Int]?

    public init(checkpoint: String, checkpointSHA256: String, architecture: String, normalize: String?, dataset: String,
                split: String, count: Int, attacks: [String], columns: [String], independent: Bool, epsilon: Float,
                alpha: Float, seed: UInt64, precision: String, batchSize: Int, balanced: Bool? = nil,
                splitIndices: [Int]? = nil) {
        self.checkpoint = checkpoint
        self.checkpointSHA256 = checkpointSHA256
        self.architecture = architecture
        self.normalize = normalize
        self.dataset = dataset
        self.split = split
        self.count = count
        self.attacks = attacks
        self.columns = columns
        self.independent = independent
        self.epsilon = epsilon
        self.alpha = alpha
        self.seed = seed
        self.precision = precision
        self.batchSize = batchSize
        self.balanced = balanced
        self.splitIndices = splitIndices
    }

    /// The SHA-256 of a checkpoint file, as `sha256sum` prints it.
    public static func hash(of url: URL) throws -> String { try SHA256.hex(of: url) }

    /// What differs between a file's header (self) and this command's, one phrase per field,
    /// naming the flag that sets it; empty when they agree (the checkpoint's path aside).
    public func differences(from command: EvaluationHeader) -> [String] {
        var out = [String]()
        func check<T: Equatable>(_ a: T, _ b: T, _ what: String, _ show: (T) -> String) {
            // The file's values are escaped: a header may hold a newline or terminal codes.
            if a != b { out.append("\(what): the file has \(messageText(show(a), limit: 200)), this command \(messageText(show(b), limit: 200))") }
        }
        check(format, command.format, "format", { $0 })
        check(version, command.version, "format version", { String($0) })
        check(checkpointSHA256, command.checkpointSHA256, "the checkpoint's SHA-256", { String($0.prefix(12)) })
        check(architecture, command.architecture, "--arch", { $0 })
        check(normalize, command.normalize, "--normalize", { $0 ?? "none" })
        check(dataset, command.dataset, "the dataset (--data)", { $0 })
        check(split, command.split, "the split", { $0 })
        check(count, command.count, "the number of points (--limit)", { String($0) })
        check(balanced ?? false, command.balanced ?? false, "--balanced", { String($0) })
        if balanced == command.balanced && count == command.count && splitIndices != command.splitIndices {
            func show(_ indices: [Int]?) -> String {
                guard let indices else { return "the first \(count) of the split" }
                return indices.prefix(6).map(String.init).joined(separator: ", ") + (indices.count > 6 ? ", ..." : "")
            }
            out.append(balanced == true && splitIndices == nil
                ? "the file comes from an older part eval, which keyed the random draws of --balanced points by their place in "
                    + "the subset, not by their index in the test split: start a new --save-results file"
                : "the points' indices in the split: the file has \(show(splitIndices)), this command \(show(command.splitIndices))")
        }
        check(columns, command.columns, "--attacks", { $0.joined(separator: ",") })
        check(independent, command.independent, "--independent", { String($0) })
        check(epsilon, command.epsilon, "--eps", { String($0) })
        check(alpha, command.alpha, "--alpha", { String($0) })
        if columns == command.columns && epsilon == command.epsilon && alpha == command.alpha {
            check(attacks, command.attacks, "the attacks' parameters", { $0.joined(separator: ",") })
        }
        check(seed, command.seed, "--seed", { String($0) })
        check(precision, command.precision, "--precision", { $0 })
        check(batchSize, command.batchSize, "--batch-size", { String($0) })
        return out
    }

    func line() throws -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return String(decoding: try encoder.encode(self), as: UTF8.self)
    }
}

/// The outcome of one point: its clean prediction, whether it is still robust after each
/// stage, and which stage broke it.
public struct ExampleOutcome: Codable, Equatable, Sendable {
    /// Index in the dataset split.
    public var index: Int
    public var label: Int32
    /// The clean prediction.
    public var prediction: Int32
    /// Per stage (natural first): in a sequence, robust after that stage (so monotone); with
    /// `--independent`, robust against that attack alone.
    public var robust: [Bool]
    /// The first stage whose success was verified (nil: still robust, or misclassified clean).
    public var brokenBy: Int?
    /// The prediction on the worst-case example, in a batch of its own.
    public var adversarialPrediction: Int32?
    /// Stages whose claimed success failed re-verification.
    public var unverified: [Int]

    /// Robust against every stage: the worst case.
    public var robustAtTheEnd: Bool { robust.allSatisfy { $0 } }

    /// One JSON line with the stages as columns:
    /// {"index":0,"label":9,"prediction":9,"natural":true,"pgd20":false,...,"brokenBy":"pgd20",
    ///  "adversarialPrediction":7,"unverified":[]}
    func line(columns: [String]) -> String {
        var fields = ["\"index\":\(index)", "\"label\":\(label)", "\"prediction\":\(prediction)"]
        for (name, flag) in zip(columns, robust) { fields.append("\(jsonStringLiteral(name)):\(flag)") }
        fields.append("\"brokenBy\":\(brokenBy.map { jsonStringLiteral(columns[$0]) } ?? "null")")
        fields.append("\"adversarialPrediction\":\(adversarialPrediction.map { String($0) } ?? "null")")
        fields.append("\"unverified\":[\(unverified.map { jsonStringLiteral(columns[$0]) }.joined(separator: ","))]")
        return "{" + fields.joined(separator: ",") + "}"
    }

    /// Parses a line written by `line(columns:)`; nil when it is not one.
    init?(line: Substring, columns: [String]) {
        guard let object = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any],
              let index = object["index"] as? Int, let label = (object["label"] as? Int).flatMap(Int32.init(exactly:)),
              let prediction = (object["prediction"] as? Int).flatMap(Int32.init(exactly:)) else { return nil }
        var adversarialPrediction: Int32?
        if let value = object["adversarialPrediction"], !(value is NSNull) {
            guard let p = (value as? Int).flatMap(Int32.init(exactly:)) else { return nil }
            adversarialPrediction = p
        }
        var robust = [Bool]()
        for name in columns {
            guard let flag = object[name] as? Bool else { return nil }
            robust.append(flag)
        }
        var brokenBy: Int?
        if let name = object["brokenBy"] as? String {
            guard let s = columns.firstIndex(of: name) else { return nil }
            brokenBy = s
        }
        let unverifiedNames = object["unverified"] as? [String] ?? []
        let unverified = unverifiedNames.compactMap { columns.firstIndex(of: $0) }
        guard unverified.count == unverifiedNames.count else { return nil }
        self.init(index: index, label: label, prediction: prediction, robust: robust, brokenBy: brokenBy,
                  adversarialPrediction: adversarialPrediction, unverified: unverified)
    }

    init(index: Int, label: Int32, prediction: Int32, robust: [Bool], brokenBy: Int?, adversarialPrediction: Int32?,
         unverified: [Int]) {
        self.index = index
        self.label = label
        self.prediction = prediction
        self.robust = robust
        self.brokenBy = brokenBy
        self.adversarialPrediction = adversarialPrediction
        self.unverified = unverified
    }
}

/// The per-example results file: JSON lines, the header first, then one line per point in
/// dataset order, appended (and flushed to disk) batch by batch.
///
/// Beside it, `FILE.progress.json` holds what a resumed run needs beyond finished points: the
/// stages already done on the batch in progress with their flags, and the time spent per stage.
/// It is replaced atomically (written aside, then renamed) after every stage of every batch.
final class ResultsFile {
    let url: URL
    let header: EvaluationHeader
    let headerLine: String
    private let handle: FileHandle
    /// Points whose lines are in the file: 0..<committed.
    private(set) var committed: Int

    var progressURL: URL { URL(fileURLWithPath: url.path + ".progress.json") }

    /// Opens `url` for this evaluation: a new or empty file gets the header; an existing one must
    /// carry the same header and is read back (a line cut short by a crash is dropped).
    static func open(_ url: URL, header: EvaluationHeader) throws -> (ResultsFile, [ExampleOutcome]) {
        let headerLine = try header.line()
        let fm = FileManager.default
        var outcomes = [ExampleOutcome]()
        var keep = 0   // bytes of the file to keep
        if fm.fileExists(atPath: url.path) {
            guard let data = fm.contents(atPath: url.path) else {
                throw EvaluationError("\(url.path) exists but cannot be read")
            }
            // Only whole lines count: a run killed while appending leaves a partial last line.
            let whole = data.lastIndex(of: UInt8(ascii: "\n")).map { data.startIndex.distance(to: $0) + 1 } ?? 0
            let lines = data.prefix(whole).split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false).dropLast()
            // A header cut short by a crash is rewritten; any other content without a whole line
            // is not ours to overwrite.
            if lines.isEmpty && !data.isEmpty && !Data(headerLine.utf8).starts(with: data) {
                throw EvaluationError("\(url.path) exists and is not a results file of part eval: choose another --save-results file")
            }
            if let first = lines.first {
                guard let existing = try? JSONDecoder().decode(EvaluationHeader.self, from: Data(first)) else {
                    throw EvaluationError("\(url.path) is not a results file of part eval (its first line is not a header): "
                                          + "choose another --save-results file")
                }
                let differences = existing.differences(from: header)
                guard differences.isEmpty else {
                    throw EvaluationError("\(url.path) holds results of another evaluation (\(differences.joined(separator: "; "))): "
                                          + "rerun with the same settings to resume, or choose another --save-results file")
                }
                var ends = [data.startIndex.distance(to: first.endIndex) + 1]   // byte offset after each line
                for (n, line) in lines.dropFirst().enumerated() {
                    guard let outcome = ExampleOutcome(line: Substring(decoding: line, as: UTF8.self), columns: header.columns),
                          outcome.index == n, outcome.robust.count == header.columns.count else {
                        throw EvaluationError("\(url.path): line \(n + 2) is not the record of point \(n); the file is corrupt "
                                              + "(delete it to start over)")
                    }
                    outcomes.append(outcome)
                    ends.append(data.startIndex.distance(to: line.endIndex) + 1)
                }
                guard outcomes.count <= header.count else {
                    throw EvaluationError("\(url.path) holds \(outcomes.count) records for \(header.count) points; the file is corrupt")
                }
                // A batch's lines are appended in one write; a run killed during it leaves some of
                // them: keep whole batches only (they are redone).
                if outcomes.count < header.count {
                    outcomes.removeLast(outcomes.count % header.batchSize)
                }
                keep = ends[outcomes.count]
            }
        } else {
            guard fm.createFile(atPath: url.path, contents: nil) else {
                throw EvaluationError("cannot create \(url.path): check the directory exists and is writable")
            }
        }
        let handle = try FileHandle(forUpdating: url)
        try handle.truncate(atOffset: UInt64(keep))
        try handle.seekToEnd()
        if keep == 0 {
            try handle.write(contentsOf: Data((headerLine + "\n").utf8))
            try handle.synchronize()
        }
        let file = ResultsFile(url: url, header: header, headerLine: headerLine, handle: handle, committed: outcomes.count)
        return (file, outcomes)
    }

    private init(url: URL, header: EvaluationHeader, headerLine: String, handle: FileHandle, committed: Int) {
        self.url = url
        self.header = header
        self.headerLine = headerLine
        self.handle = handle
        self.committed = committed
    }

    deinit { try? handle.close() }

    /// Appends the lines of the next points and flushes them to disk.
    func append(_ outcomes: [ExampleOutcome]) throws {
        guard let first = outcomes.first else { return }
        precondition(first.index == committed, "results must be appended in dataset order")
        let text = outcomes.map { $0.line(columns: header.columns) + "\n" }.joined()
        do {
            try handle.write(contentsOf: Data(text.utf8))
            try handle.synchronize()
        } catch {
            // Foundation's text names neither the file nor the cause a user can act on.
            let reason = ((error as NSError).userInfo[NSUnderlyingErrorKey] as? NSError).map { String(cString: strerror(Int32($0.code))) }
                ?? "\(error.localizedDescription)"
            throw EvaluationError("cannot write \(url.path) (\(reason.lowercased())); the \(committed) points written before are "
                                  + "kept: free space and rerun the command to resume")
        }
        committed += outcomes.count
    }

    /// The progress beside the results file, if it belongs to this header.
    func readProgress() -> EvaluationProgressState? {
        guard let data = FileManager.default.contents(atPath: progressURL.path),
              let state = try? JSONDecoder().decode(EvaluationProgressState.self, from: data),
              state.header == headerLine, state.seconds.count == header.columns.count else { return nil }
        return state
    }

    /// Replaces the progress file atomically (written aside, flushed, renamed).
    func writeProgress(_ state: EvaluationProgressState) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        let data = try encoder.encode(state)
        let temporary = URL(fileURLWithPath: progressURL.path + ".tmp")
        guard FileManager.default.createFile(atPath: temporary.path, contents: data) else {
            throw EvaluationError("cannot write \(temporary.path): check the directory is writable")
        }
        let h = try FileHandle(forWritingTo: temporary)
        try h.synchronize()
        try h.close()
        guard rename(temporary.path, progressURL.path) == 0 else {
            throw EvaluationError("cannot rename \(temporary.path) to \(progressURL.path)")
        }
    }
}

/// What `FILE.progress.json` holds.
struct EvaluationProgressState: Codable {
    /// The results file's header line, verbatim.
    var header: String
    /// Seconds spent per stage over every run of this evaluation (natural first).
    var seconds: [Double]
    /// The batch in progress, when a stage of it has finished.
    var batch: BatchProgress?
}

/// A batch in progress: its range of dataset indices, the number of stages done, and the
/// outcomes after them.
struct BatchProgress: Codable {
    var start: Int
    var end: Int
    var stagesDone: Int
    var outcomes: [ExampleOutcome]
}
