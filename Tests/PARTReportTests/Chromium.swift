import Foundation
import PARTTestSupport
import XCTest
@testable import PARTReport

/// Headless Chromium (Debian's `chromium`, installed by scripts/setup.sh) as the judge of an
/// HTML page: what its console printed and a screenshot.
enum Chromium {
    static var executable: URL? {
        for path in ["/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome"]
        where FileManager.default.isExecutableFile(atPath: path) {
            return URL(fileURLWithPath: path)
        }
        return nil
    }

    struct Rendering {
        /// Lines the page's console printed ("INFO:CONSOLE..." in Chromium's log).
        let console: [String]
        let screenshot: RasterImage
        let log: String
    }

    /// Opens `page` headless, as
    /// `chromium --headless --disable-gpu --no-sandbox --enable-logging=stderr --screenshot=... --window-size=...`.
    static func render(_ page: URL, width: Int = 1280, height: Int = 2400, in directory: URL) throws -> Rendering {
        guard let executable else { throw XCTSkip("chromium is not installed (bash scripts/setup.sh installs it)") }
        let shot = directory.appendingPathComponent("screenshot-\(UUID().uuidString).png")
        // Its own profile folder, so parallel runs and a user's browser do not interfere.
        let profile = directory.appendingPathComponent("chromium-profile")
        let result = try runProcess(["--headless", "--disable-gpu", "--no-sandbox", "--enable-logging=stderr", "--v=0",
                              "--user-data-dir=\(profile.path)", "--screenshot=\(shot.path)",
                              "--window-size=\(width),\(height)", page.absoluteString],
                             executable: executable)
        let log = result.stdout + result.stderr
        guard let data = FileManager.default.contents(atPath: shot.path) else {
            XCTFail("chromium wrote no screenshot (exit \(result.status)):\n\(log)")
            throw XCTSkip("no screenshot")
        }
        let console = log.split(separator: "\n").map(String.init).filter { $0.contains(":CONSOLE") }
        return Rendering(console: console, screenshot: try RasterImage.decodePNG(data, source: shot.path), log: log)
    }
}

extension RasterImage {
    /// Pixels (RGBA images) whose colour is exactly (r, g, b).
    func count(_ r: UInt8, _ g: UInt8, _ b: UInt8) -> Int {
        var n = 0
        for p in stride(from: 0, to: pixels.count, by: channels) where pixels[p] == r && pixels[p + 1] == g && pixels[p + 2] == b {
            n += 1
        }
        return n
    }

    /// Share of pixels that are not white.
    var inked: Double {
        var n = 0
        for p in stride(from: 0, to: pixels.count, by: channels) where pixels[p] < 250 || pixels[p + 1] < 250 || pixels[p + 2] < 250 {
            n += 1
        }
        return Double(n) / Double(width * height)
    }
}
