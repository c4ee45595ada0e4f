import Foundation
import PARTEngine
import PARTTraining

/// One line of a run's `log.jsonl`: the epoch, its budget provider and its figures by field name
/// (non-finite values, written as "nan"/"inf"/"-inf", are read back as such).
public struct EpochRecord {
    public let epoch: Int
    public let budget: String
    public let values: [String: Double]

    public func value(_ key: String) -> Double { values[key] ?? .nan }
}

/// The outcome of one `part eval --save-results` file: its header, and per attack column how
/// many of the points written so far are still robust.
public struct EvaluationTable {
    /// The name shown (`eval/NAME.jsonl`, or the path given to `--results`) and the file read.
    public let file: String
    public let source: URL
    public let header: [(String, String)]
    public let columns: [String]
    public let descriptions: [String]
    /// Points the header announces, and points written.
    public let count: Int
    public let done: Int
    public let robust: [Int]
    /// Points robust against every column.
    public let worstCase: Int
    public let unverified: Int
    /// The header's budget, and what else defines the evaluation (checkpoint, data, attacks by
    /// name, seed, precision): files equal in it but for eps make one robustness curve.
    public let epsilon: Double?
    public let curveKey: String
}

/// The HTML report of a run directory (docs/conventions.md#4-the-run-directory): configuration, environment,
/// training curves, the evaluation tables of `RUN/eval/*.jsonl` and a CAM grid, in one file
/// that needs nothing else: styles inline, curves as inline SVG, the grid as a data: URI, no
/// scripts.
public struct RunReport {
    /// The run directory as the user named it: a relative path stays relative on the page.
    public let runDirectory: URL
    public var configuration: [(String, String)] = []
    public var configurationSource = ""
    public var checkpoint: [(String, String)] = []
    public var environment: [(String, String)] = []
    public var epochs: [EpochRecord] = []
    public var evaluations: [EvaluationTable] = []
    /// The PNG of a CAM grid and what it shows.
    public var camGrid: (png: Data, caption: String)?
    /// Sentences about what is missing or how to see more (`shownNotes` adds the hint on
    /// evaluation tables while there are none).
    public var notes: [String] = []
    public var generated = Date()

    public init(runDirectory: URL) {
        self.runDirectory = runDirectory
    }

    // MARK: reading a run directory

    /// Reads the run's configuration, log, checkpoint metadata and evaluation results.
    public static func read(runDirectory: URL) throws -> RunReport {
        let fm = FileManager.default
        var isDirectory: ObjCBool = false
        guard fm.fileExists(atPath: runDirectory.path, isDirectory: &isDirectory), isDirectory.boolValue else {
            throw ReportError("\(runDirectory.path): no such directory; name a run directory written by part train")
        }
        var report = RunReport(runDirectory: runDirectory)
        // A --seeds sweep's config.json records the sweep (its seeds) beside its plan.
        var isSweep = false
        let state = runDirectory.appendingPathComponent("last.state.safetensors")
        let model = runDirectory.appendingPathComponent("last.safetensors")
        let log = runDirectory.appendingPathComponent("log.jsonl")
        // The run's record, read as part train --resume and part cam read it.
        let record: RunRecord?
        do {
            record = try RunRecord.read(runDirectory)
        } catch {
            throw ReportError("\(error); restore it or rerun part train")
        }
        if let record, let object = try? JSONSerialization.jsonObject(with: JSONOutput.encoder().encode(record)) {
            report.configuration = flatten(object)
            report.configurationSource = "config.json"
            isSweep = record.sweep != nil
        } else if let meta = try? checkpointMetadata(state), let text = meta["config"],
                  let object = try? JSONSerialization.jsonObject(with: Data(text.utf8)) {
            report.configuration = flatten(object)
            report.configurationSource = "last.state.safetensors"
        }
        if fm.fileExists(atPath: model.path) {
            report.checkpoint = try checkpointMetadata(model).sorted { $0.key < $1.key }.map { ($0.key, $0.value) }
        }
        if fm.fileExists(atPath: log.path) {
            report.epochs = try readLog(log)
        }
        if report.epochs.isEmpty && (report.configuration.isEmpty || isSweep) {
            let seeds = (try? fm.contentsOfDirectory(atPath: runDirectory.path))?.filter { $0.hasPrefix("seed-") }.sorted() ?? []
            if seeds.isEmpty {
                throw ReportError("\(runDirectory.path) holds no run (no log.jsonl, config.json or checkpoint): "
                                  + "name a directory written by part train")
            }
            report.notes.append("This directory holds a seed sweep (\(seeds.joined(separator: ", "))): each seed has its "
                                + "own report, e.g. part report \(runDirectory.appendingPathComponent(seeds[0]).path).")
            if let data = fm.contents(atPath: runDirectory.appendingPathComponent("summary.json").path),
               let object = try? JSONSerialization.jsonObject(with: data) {
                report.configuration = flatten(object)
                report.configurationSource = "summary.json"
            }
        }
        let evalDirectory = runDirectory.appendingPathComponent("eval")
        let files = ((try? fm.contentsOfDirectory(atPath: evalDirectory.path)) ?? []).filter { $0.hasSuffix(".jsonl") }.sorted()
        for file in files {
            report.evaluations.append(try readEvaluation(evalDirectory.appendingPathComponent(file), shownAs: "eval/" + file))
        }
        if fm.fileExists(atPath: runDirectory.appendingPathComponent("tb").path) {
            report.notes.append("TensorBoard: tensorboard --logdir \(runDirectory.appendingPathComponent("tb").relativePath)")
        }
        return report
    }

    /// Nested JSON as (dotted key, value) rows; the keys of a top-level "config" object are
    /// shown without the prefix.
    static func flatten(_ object: Any, prefix: String = "") -> [(String, String)] {
        if let dict = object as? [String: Any] {
            return dict.keys.sorted().flatMap { key -> [(String, String)] in
                let path = prefix.isEmpty ? (key == "config" ? "" : key) : prefix + "." + key
                if key == "config" && prefix.isEmpty, let inner = dict[key] as? [String: Any] {
                    return flatten(inner)
                }
                return flatten(dict[key] as Any, prefix: path)
            }
        }
        if let array = object as? [Any] {
            if array.allSatisfy({ !($0 is [String: Any]) && !($0 is [Any]) }) {
                return [(prefix, array.map(scalarText).joined(separator: ", "))]
            }
            return array.enumerated().flatMap { flatten($1, prefix: "\(prefix)[\($0)]") }
        }
        return [(prefix, scalarText(object))]
    }

    static func scalarText(_ value: Any) -> String {
        if value is NSNull { return "none" }
        if let n = value as? NSNumber {
            if isBoolean(n) { return n.boolValue ? "true" : "false" }
            return "\(n)"
        }
        return "\(value)"
    }

    /// Whether JSONSerialization read `true`/`false` (a boolean NSNumber, whose class is
    /// `__NSCFBoolean` in both Foundations) rather than a number.
    static func isBoolean(_ n: NSNumber) -> Bool { String(describing: type(of: n)).contains("Boolean") }

    static func number(_ value: Any?) -> Double? {
        if let n = value as? NSNumber, !isBoolean(n) { return n.doubleValue }
        if let s = value as? String { return ["nan": Double.nan, "inf": .infinity, "-inf": -.infinity][s] }
        return nil
    }

    /// The bytes of a file the report reads: a regular file only, so that a FIFO or a device
    /// named by mistake is an error instead of a wait or an endless read.
    static func contents(_ url: URL) throws -> Data {
        do {
            return Data(try FileInput.read(url))
        } catch {
            throw ReportError("\(error)")
        }
    }

    static func readLog(_ url: URL) throws -> [EpochRecord] {
        let data = try contents(url)
        var records = [EpochRecord]()
        for (i, line) in data.split(separator: UInt8(ascii: "\n")).enumerated() {
            guard let object = try? JSONSerialization.jsonObject(with: Data(line)) as? [String: Any],
                  let epoch = object["epoch"] as? Int else {
                throw ReportError("\(url.path): line \(i + 1) is not an epoch record of part train; restore the file or rerun")
            }
            var values = [String: Double]()
            for (key, value) in object { if let v = number(value) { values[key] = v } }
            records.append(EpochRecord(epoch: epoch, budget: object["budget"] as? String ?? "", values: values))
        }
        return records
    }

    /// The "__metadata__" of a safetensors file (a checkpoint's architecture, recipe, epoch),
    /// read from its header alone.
    public static func checkpointMetadata(_ url: URL) throws -> [String: String] {
        do {
            return try SafetensorsHeader.read(from: url).metadata
        } catch {
            throw ReportError("\(error)")
        }
    }

    /// Adds the table of a results file kept outside `RUN/eval/` (`part report --results FILE`),
    /// shown under the path as given. A file already in the report (the same file reached by
    /// another path) is not added twice.
    public mutating func addEvaluation(_ url: URL) throws {
        guard FileManager.default.fileExists(atPath: url.path) else {
            throw ReportError("--results \(url.relativePath): no such file; name a results file of part eval --save-results")
        }
        guard !evaluations.contains(where: { OutputPath.sameFile($0.source.path, url.path) }) else { return }
        evaluations.append(try Self.readEvaluation(url, shownAs: url.relativePath))
    }

    /// The notes the page shows: while no evaluation table is there, how to add one, then `notes`.
    public var shownNotes: [String] {
        guard evaluations.isEmpty else { return notes }
        let model = runDirectory.appendingPathComponent("last.safetensors")
        let results = runDirectory.appendingPathComponent("eval").appendingPathComponent("NAME.jsonl")
        return ["No evaluation results yet: part eval \(model.relativePath) --save-results \(results.relativePath) adds a "
                + "table here; part report --results FILE adds a results file kept elsewhere."] + notes
    }

    static func readEvaluation(_ url: URL, shownAs title: String) throws -> EvaluationTable {
        let data = try contents(url)
        // Only whole lines count: an evaluation still running may be writing the last one.
        let lines = data.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false).dropLast()
        guard let first = lines.first, let header = try? JSONSerialization.jsonObject(with: Data(first)) as? [String: Any],
              let columns = header["columns"] as? [String] else {
            throw ReportError("\(url.path) is not a results file of part eval --save-results (no header line)"
                              + (title.hasPrefix("eval/") ? "; move it out of eval/" : ""))
        }
        var robust = [Int](repeating: 0, count: columns.count), worst = 0, unverified = 0, done = 0
        for line in lines.dropFirst() where !line.isEmpty {
            guard let row = try? JSONSerialization.jsonObject(with: Data(line)) as? [String: Any] else {
                throw ReportError("\(url.path): line \(done + 2) is not a result line; the file is damaged")
            }
            done += 1
            var all = true
            for (k, column) in columns.enumerated() {
                if row[column] as? Bool == true { robust[k] += 1 } else { all = false }
            }
            if all { worst += 1 }
            unverified += (row["unverified"] as? [Any])?.count ?? 0
        }
        let shown = ["checkpoint", "architecture", "dataset", "split", "count", "epsilon", "alpha", "seed", "precision",
                     "independent", "normalize", "batchSize"]
        var fields = [(String, String)]()
        for key in shown { if let v = header[key], !(v is NSNull) { fields.append((key, scalarText(v))) } }
        if let sha = header["checkpointSHA256"] as? String { fields.append(("checkpoint SHA-256", String(sha.prefix(16)) + "...")) }
        let descriptions = header["attacks"] as? [String] ?? columns
        let curveKey = ["checkpointSHA256", "architecture", "normalize", "dataset", "split", "count", "columns", "independent",
                        "seed", "precision", "balanced"].map { header[$0].map(scalarText) ?? "" }.joined(separator: "|")
            + "|" + columns.joined(separator: ",")
        return EvaluationTable(file: title, source: url, header: fields, columns: columns,
                               descriptions: descriptions.count == columns.count ? descriptions : columns,
                               count: (header["count"] as? Int) ?? done, done: done, robust: robust, worstCase: worst,
                               unverified: unverified, epsilon: number(header["epsilon"]), curveKey: curveKey)
    }

    // MARK: HTML

    /// The configuration value of `key`, if recorded.
    func setting(_ key: String) -> String? { configuration.first { $0.0 == key }?.1 }

    /// The report as one HTML document.
    public func html() -> String {
        let name = runDirectory.lastPathComponent
        var h = "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
        h += "<title>PART run report: \(HTML.escape(name))</title>\n<style>\n\(Self.style)</style>\n</head>\n<body>\n"
        h += "<h1>PART run report: \(HTML.escape(name))</h1>\n"
        h += "<p class=\"meta\">\(HTML.escape(runDirectory.relativePath)) &middot; written "
            + "\(HTML.escape(ISO8601DateFormatter().string(from: generated)))</p>\n"
        if let last = epochs.last {
            h += "<p class=\"summary\">" + HTML.escape(summaryLine(last)) + "</p>\n"
        }
        for note in shownNotes { h += "<p class=\"note\">\(HTML.escape(note))</p>\n" }

        h += "<h2>Training curves</h2>\n"
        if epochs.isEmpty {
            h += "<p>No epoch has finished yet (log.jsonl is empty or missing).</p>\n"
        } else {
            h += "<div class=\"charts\">\n" + charts().map { "<figure>\($0.svg)</figure>\n" }.joined() + "</div>\n"
            h += epochTable()
        }

        h += "<h2>Evaluation</h2>\n"
        if evaluations.isEmpty {
            h += "<p>No results of part eval --save-results in eval/ (or given with --results).</p>\n"
        }
        let curves = robustnessCurves()
        if !curves.isEmpty {
            h += "<div class=\"charts\">\n" + curves.map { "<figure>\($0.svg)</figure>\n" }.joined() + "</div>\n"
        }
        for table in evaluations { h += evaluationHTML(table) }

        h += "<h2>CAM and epsilon maps of held-out images</h2>\n"
        if let grid = camGrid {
            h += "<figure class=\"grid\"><img alt=\"CAM grid\" src=\"data:image/png;base64,\(grid.png.base64EncodedString())\">"
                + "<figcaption>\(HTML.escape(grid.caption))</figcaption></figure>\n"
        } else {
            h += "<p>No CAM grid (the checkpoint or the test images could not be read).</p>\n"
        }

        h += "<h2>Configuration</h2>\n"
        if configuration.isEmpty {
            h += "<p>No configuration recorded.</p>\n"
        } else {
            h += "<p class=\"meta\">from \(HTML.escape(configurationSource))</p>\n" + keyValueTable(configuration)
        }
        if !checkpoint.isEmpty {
            h += "<h3>Checkpoint metadata (last.safetensors)</h3>\n" + keyValueTable(checkpoint)
        }
        h += "<h2>Environment</h2>\n<p class=\"meta\">where this report was written</p>\n" + keyValueTable(environment)
        h += "</body>\n</html>\n"
        return h
    }

    func summaryLine(_ last: EpochRecord) -> String {
        var parts = ["epoch \(last.epoch)"]
        if !last.budget.isEmpty { parts.append(last.budget) }
        parts.append(String(format: "clean %.2f%%", 100 * last.value("cleanAccuracy")))
        parts.append(String(format: "%@ %.2f%%", pgdName as NSString, 100 * last.value("robustAccuracy")))
        if let n = last.values["evalCount"] { parts.append("on \(Int(n)) held-out images") }
        return "Last epoch: " + parts.joined(separator: ", ")
    }

    var pgdName: String { setting("evalSteps").map { "PGD-\($0)" } ?? "PGD" }

    func charts() -> [SVGChart] {
        func points(_ key: String) -> [(Double, Double)] { epochs.map { (Double($0.epoch), $0.value(key)) } }
        var charts = [
            SVGChart(title: "Training loss", series: [.init(name: "loss", colour: "#1f77b4", points: points("loss"))]),
            SVGChart(title: "Accuracy", series: [
                .init(name: "train adversarial", colour: "#ff7f0e", points: points("trainAccuracy")),
                .init(name: "clean (held-out)", colour: "#2ca02c", points: points("cleanAccuracy")),
                .init(name: "\(pgdName) (held-out)", colour: "#d62728", points: points("robustAccuracy")),
            ], percent: true),
            SVGChart(title: "Share of entries at full eps",
                     series: [.init(name: "full eps", colour: "#9467bd", points: points("fullEpsilonFraction"))], percent: true),
            SVGChart(title: "Training speed (images/s)",
                     series: [.init(name: "images/s", colour: "#8c564b", points: points("imagesPerSecond"))]),
        ]
        // PART's burn-in: the first epochs with a constant budget, when later ones use maps.
        let constant = epochs.filter { $0.budget == "constant" }.map(\.epoch)
        if let lo = constant.min(), let hi = constant.max(), constant.count < epochs.count {
            for i in charts.indices { charts[i].band = (Double(lo)...Double(hi), "constant budget") }
        }
        return charts
    }

    /// Accuracy against eps, one chart per group of finished results files that differ only in
    /// eps (`part eval --eps 2/255,4/255,8/255 --save-results eval/NAME.jsonl`): the clean accuracy
    /// and the worst case over the attacks.
    func robustnessCurves() -> [SVGChart] {
        let finished = evaluations.filter { $0.done == $0.count && $0.done > 0 && $0.epsilon != nil }
        var groups = [String: [EvaluationTable]]()
        var order = [String]()
        for t in finished {
            if groups[t.curveKey] == nil { order.append(t.curveKey) }
            groups[t.curveKey, default: []].append(t)
        }
        return order.compactMap { key -> SVGChart? in
            let tables = (groups[key] ?? []).sorted { ($0.epsilon ?? 0) < ($1.epsilon ?? 0) }
            guard Set(tables.compactMap(\.epsilon)).count == tables.count, tables.count > 1 else { return nil }
            func share(_ n: Int, _ t: EvaluationTable) -> Double { Double(n) / Double(t.done) }
            let columns = tables[0].columns.joined(separator: ", ")
            var chart = SVGChart(title: "Accuracy against eps (\(columns))", series: [
                .init(name: "clean", colour: "#2ca02c", points: tables.map { ($0.epsilon ?? 0, share($0.robust[0], $0)) }),
                .init(name: "worst case", colour: "#d62728", points: tables.map { ($0.epsilon ?? 0, share($0.worstCase, $0)) }),
            ], percent: true)
            chart.xName = "eps"
            chart.xTicks = tables.map { ($0.epsilon ?? 0, budgetText($0.epsilon ?? 0)) }
            return chart
        }
    }

    func epochTable() -> String {
        var h = "<table class=\"numbers\">\n<tr><th>epoch</th><th>budget</th><th>lr</th><th>loss</th><th>train adv. acc.</th>"
            + "<th>clean</th><th>\(HTML.escape(pgdName))</th><th>full eps</th><th>images/s</th><th>seconds</th><th>CPU seconds</th></tr>\n"
        for e in epochs {
            func pct(_ k: String) -> String { String(format: "%.2f%%", 100 * e.value(k)) }
            h += "<tr><td>\(e.epoch)</td><td>\(HTML.escape(e.budget))</td>"
                + "<td>\(String(format: "%.4g", e.value("learningRate")))</td><td>\(String(format: "%.4f", e.value("loss")))</td>"
                + "<td>\(pct("trainAccuracy"))</td><td>\(pct("cleanAccuracy"))</td><td>\(pct("robustAccuracy"))</td>"
                + "<td>\(String(format: "%.1f%%", 100 * e.value("fullEpsilonFraction")))</td>"
                + "<td>\(String(format: "%.0f", e.value("imagesPerSecond")))</td><td>\(String(format: "%.0f", e.value("seconds")))</td>"
                + "<td>\(e.values["cpuSeconds"].map { String(format: "%.0f", $0) } ?? "")</td></tr>\n"
        }
        return h + "</table>\n"
    }

    func evaluationHTML(_ t: EvaluationTable) -> String {
        var h = "<h3>\(HTML.escape(t.file))</h3>\n<p class=\"meta\">"
            + t.header.map { "\(HTML.escape($0.0)) \(HTML.escape($0.1))" }.joined(separator: " &middot; ") + "</p>\n"
        if t.done < t.count {
            h += "<p class=\"note\">Unfinished: \(t.done) of \(t.count) points written; the figures are over those.</p>\n"
        }
        func pct(_ n: Int) -> String { t.done > 0 ? String(format: "%.2f%%", 100 * Double(n) / Double(t.done)) : "-" }
        h += "<table class=\"numbers\">\n<tr><th>attack</th><th>parameters</th><th>robust points</th><th>accuracy</th></tr>\n"
        for (k, column) in t.columns.enumerated() {
            h += "<tr><td>\(HTML.escape(column))</td><td>\(HTML.escape(t.descriptions[k]))</td>"
                + "<td>\(t.robust[k]) / \(t.done)</td><td>\(pct(t.robust[k]))</td></tr>\n"
        }
        h += "<tr class=\"total\"><td>worst case</td><td>robust against every attack</td>"
            + "<td>\(t.worstCase) / \(t.done)</td><td>\(pct(t.worstCase))</td></tr>\n</table>\n"
        if t.unverified > 0 {
            h += "<p class=\"note\">\(t.unverified) claimed successes failed re-verification (see the file's "
                + "\"unverified\" fields).</p>\n"
        }
        return h
    }

    func keyValueTable(_ rows: [(String, String)]) -> String {
        "<table class=\"kv\">\n" + rows.map { "<tr><th>\(HTML.escape($0.0))</th><td>\(HTML.escape($0.1))</td></tr>\n" }.joined()
            + "</table>\n"
    }

    static let style = """
    body { font-family: sans-serif; margin: 24px 32px; color: #222; max-width: 1100px; }
    h1 { font-size: 24px; margin-bottom: 4px; }
    h2 { font-size: 19px; margin-top: 28px; border-bottom: 1px solid #ccc; padding-bottom: 4px; }
    h3 { font-size: 15px; margin-bottom: 4px; }
    .meta { color: #666; font-size: 13px; margin-top: 2px; }
    .note { background: #f6f6e8; padding: 6px 10px; font-size: 14px; }
    .summary { font-size: 16px; }
    .charts { display: flex; flex-wrap: wrap; gap: 8px; }
    figure { margin: 0; }
    .chart-title { font-size: 14px; font-weight: bold; fill: #222; }
    .tick, .band { font-size: 11px; fill: #555; }
    .axis, .legend { font-size: 12px; fill: #333; }
    table { border-collapse: collapse; font-size: 13px; margin: 8px 0; }
    th, td { border: 1px solid #ddd; padding: 3px 8px; }
    .numbers td { text-align: right; }
    .numbers td:nth-child(2) { text-align: left; }
    .kv th { text-align: left; background: #f4f4f4; font-weight: normal; }
    tr.total td { font-weight: bold; }
    .grid img { max-width: 100%; image-rendering: pixelated; border: 1px solid #ddd; }
    figcaption { font-size: 13px; color: #555; }

    """

    /// Writes the report atomically.
    public func write(to url: URL) throws {
        do {
            try Data(html().utf8).write(to: url, options: .atomic)
        } catch {
            throw ReportError("cannot write \(url.path): check that its folder exists and is writable")
        }
    }
}
