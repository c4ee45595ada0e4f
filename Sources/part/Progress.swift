import ArgumentParser
import Foundation

/// Whether progress lines are shown.
struct ProgressOptions: ParsableArguments {
    @Flag(help: "Print no progress or log lines on standard error (errors still are).")
    var quiet = false
}

/// Progress on standard error: one line redrawn in place on a terminal (at most 5 times a
/// second), a plain line every 30 seconds when standard error is a file or a pipe, nothing when
/// quiet. With `update(done:total:...)` the line carries the rate and an ETA.
struct Progress {
    let isTerminal = isatty(2) == 1
    let quiet: Bool
    private var lastPrinted = Date.distantPast
    private var started: Date?
    private var startDone = 0.0

    init(quiet: Bool = false) {
        self.quiet = quiet
    }

    mutating func update(_ text: @autoclosure () -> String, final: Bool = false) {
        guard !quiet else { return }
        let now = Date()
        guard final || now.timeIntervalSince(lastPrinted) >= (isTerminal ? 0.2 : 30) else { return }
        lastPrinted = now
        let line = text()
        FileHandle.standardError.write(Data((isTerminal ? "\r\u{1B}[K\(line)" : "\(line)\n").utf8))
        if final && isTerminal { FileHandle.standardError.write(Data("\n".utf8)) }
    }

    /// A line "`detail`  37.5%  12.3 points/s  ETA 1m05s": the rate and the ETA are measured from
    /// the first call, so work done before it (a resumed run) does not inflate them.
    mutating func update(done: Double, total: Double, unit: String, _ detail: @autoclosure () -> String) {
        let now = Date()
        if started == nil {
            started = now
            startDone = done
        }
        let elapsed = now.timeIntervalSince(started ?? now)
        let rate = elapsed > 0 ? (done - startDone) / elapsed : 0
        let fraction = total > 0 ? done / total : 1
        var line = detail() + String(format: "  %.1f%%", 100 * fraction)
        if rate > 0 {
            line += String(format: "  %.3g %@/s  ETA %@", rate, unit as NSString, Self.duration((total - done) / rate) as NSString)
        }
        update(line)
    }

    /// Writes a log line (not redrawn) on standard error, unless quiet.
    func log(_ line: String) {
        guard !quiet else { return }
        clear()
        FileHandle.standardError.write(Data("\(line)\n".utf8))
    }

    func clear() {
        if isTerminal && !quiet { FileHandle.standardError.write(Data("\r\u{1B}[K".utf8)) }
    }

    /// "45s", "3m05s", "2h07m".
    static func duration(_ seconds: Double) -> String {
        guard seconds.isFinite, seconds >= 0 else { return "?" }
        let s = Int(seconds.rounded())
        if s < 60 { return "\(s)s" }
        if s < 3600 { return String(format: "%dm%02ds", s / 60, s % 60) }
        return String(format: "%dh%02dm", s / 3600, (s % 3600) / 60)
    }
}
