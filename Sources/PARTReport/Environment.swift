import CDNNL
import CPNG
import Foundation
import PARTEngine

/// The machine and software a report was written with: what a reader needs to compare speeds.
public enum Environment {
    /// (name, value) rows: machine, cores, threads, instruction set, memory, system, versions.
    public static func describe(toolVersion: String) -> [(String, String)] {
        var rows = [(String, String)]()
        let info = ProcessInfo.processInfo
        rows.append(("machine", cpuModel() ?? "unknown CPU"))
        rows.append(("cores", "\(Engine.availableCores) available"))
        rows.append(("threads", "\(Engine.threads)"))
        rows.append(("instruction set (oneDNN)", Engine.instructionSet))
        rows.append(("memory", String(format: "%.1f GiB", Double(info.physicalMemory) / 1_073_741_824)))
        rows.append(("system", osName() ?? info.operatingSystemVersionString))
        rows.append(("part", toolVersion))
        rows.append(("Swift", swiftVersion))
        if let v = dnnl_version()?.pointee {
            rows.append(("oneDNN", "\(v.major).\(v.minor).\(v.patch)"))
        }
        if let png = png_get_libpng_ver(nil) { rows.append(("libpng", String(cString: png))) }
        rows.append(("host", info.hostName))
        return rows
    }

    /// The language version this binary was compiled with.
    static var swiftVersion: String {
        #if swift(>=6.3)
        return "6.3 or later"
        #elseif swift(>=6.2)
        return "6.2"
        #elseif swift(>=6.1)
        return "6.1"
        #else
        return "6.0"
        #endif
    }

    /// "AMD EPYC ..." from /proc/cpuinfo (Linux), nil elsewhere.
    static func cpuModel() -> String? {
        guard let text = try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8) else { return nil }
        for line in text.split(separator: "\n") where line.hasPrefix("model name") {
            if let colon = line.firstIndex(of: ":") { return line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces) }
        }
        return nil
    }

    /// PRETTY_NAME of /etc/os-release ("Debian GNU/Linux 12 (bookworm)").
    static func osName() -> String? {
        guard let text = try? String(contentsOfFile: "/etc/os-release", encoding: .utf8) else { return nil }
        for line in text.split(separator: "\n") where line.hasPrefix("PRETTY_NAME=") {
            return line.dropFirst("PRETTY_NAME=".count).trimmingCharacters(in: CharacterSet(charactersIn: "\""))
        }
        return nil
    }
}
