import Foundation
import PARTEngine

/// A line chart over epochs as inline SVG: axes with rounded ticks, one polyline per series,
/// a dot with a tooltip (`<title>`) per value, a legend, and optionally a shaded band over the
/// epochs with a constant budget (PART's burn-in).
public struct SVGChart {
    public struct Series {
        public let name: String
        public let colour: String
        /// (epoch, value); non-finite values are left out of the line.
        public let points: [(Double, Double)]

        public init(name: String, colour: String, points: [(Double, Double)]) {
            self.name = name
            self.colour = colour
            self.points = points
        }
    }

    public var title: String
    public var series: [Series]
    /// Values shown as percentages (they are fractions).
    public var percent = false
    /// Epochs drawn on a grey band, with its label.
    public var band: (ClosedRange<Double>, String)?
    public var width = 460.0, height = 270.0
    /// The x axis's name; epochs by default.
    public var xName = "epoch"
    /// Ticks of the x axis at these values with these labels (a robustness curve's budgets); nil:
    /// integer epochs (at most ten labels) with half an epoch of margin.
    public var xTicks: [(value: Double, label: String)]?

    public init(title: String, series: [Series], percent: Bool = false) {
        self.title = title
        self.series = series
        self.percent = percent
    }

    /// About five ticks from `lo` to `hi` at 1, 2 or 5 times a power of ten, covering both.
    static func ticks(_ lo: Double, _ hi: Double) -> [Double] {
        var (a, b) = (lo, hi)
        if a == b {
            let pad = a == 0 ? 1 : abs(a) * 0.1
            (a, b) = (a - pad, b + pad)
        }
        let rough = (b - a) / 5
        let magnitude = pow(10, floor(log10(rough)))
        let step = [1.0, 2, 5, 10].map { $0 * magnitude }.first { $0 >= rough } ?? 10 * magnitude
        let first = floor(a / step) * step, last = ceil(b / step) * step
        return stride(from: first, through: last + step / 2, by: step).map { ($0 / step).rounded() * step }
    }

    func label(_ v: Double, step: Double) -> String {
        let shown = percent ? v * 100 : v
        let stepShown = percent ? step * 100 : step
        let decimals = max(0, min(6, Int(-floor(log10(stepShown)))))
        let number = String(format: "%.\(decimals)f", shown)
        return percent ? number + "%" : number
    }

    func tooltip(_ v: Double) -> String {
        percent ? String(format: "%.2f%%", 100 * v) : String(format: "%.6g", v)
    }

    public var svg: String {
        let left = 64.0, right = 14.0, top = 46.0, bottom = 42.0
        let plotW = width - left - right, plotH = height - top - bottom
        let finite = series.flatMap { $0.points }.filter { $0.1.isFinite }
        let epochs = series.flatMap { $0.points.map(\.0) }
        var xLo = (epochs.min() ?? 1) - 0.5, xHi = (epochs.max() ?? 1) + 0.5
        if xTicks != nil, let lo = epochs.min(), let hi = epochs.max(), hi > lo {
            (xLo, xHi) = (lo - 0.06 * (hi - lo), hi + 0.06 * (hi - lo))
        }
        var yTicks = Self.ticks(finite.map(\.1).min() ?? 0, finite.map(\.1).max() ?? 1)
        // Fractions lie in [0, 1]: a flat line at 100% gets no tick above it.
        if percent {
            let inside = yTicks.filter { $0 >= -1e-9 && $0 <= 1 + 1e-9 }
            if inside.count >= 2 { yTicks = inside }
        }
        let yLo = yTicks.first ?? 0, yHi = yTicks.last ?? 1
        func x(_ e: Double) -> Double { left + (e - xLo) / (xHi - xLo) * plotW }
        func y(_ v: Double) -> Double { top + plotH - (v - yLo) / (yHi - yLo) * plotH }
        func f(_ v: Double) -> String { String(format: "%.1f", v) }

        var s = "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"\(Int(width))\" height=\"\(Int(height))\" "
            + "viewBox=\"0 0 \(Int(width)) \(Int(height))\" role=\"img\" aria-label=\"\(HTML.escape(title))\">\n"
        s += "<text x=\"\(f(left))\" y=\"18\" class=\"chart-title\">\(HTML.escape(title))</text>\n"
        if let (range, text) = band {
            let x0 = x(range.lowerBound - 0.5), x1 = x(range.upperBound + 0.5)
            s += "<rect x=\"\(f(x0))\" y=\"\(f(top))\" width=\"\(f(x1 - x0))\" height=\"\(f(plotH))\" fill=\"#eeeeee\"/>\n"
            s += "<text x=\"\(f(x0 + 4))\" y=\"\(f(top + 14))\" class=\"band\">\(HTML.escape(text))</text>\n"
        }
        // Grid lines and tick labels.
        let step = yTicks.count > 1 ? yTicks[1] - yTicks[0] : 1
        for t in yTicks {
            s += "<line x1=\"\(f(left))\" x2=\"\(f(left + plotW))\" y1=\"\(f(y(t)))\" y2=\"\(f(y(t)))\" stroke=\"#dddddd\"/>\n"
            s += "<text x=\"\(f(left - 6))\" y=\"\(f(y(t) + 4))\" text-anchor=\"end\" class=\"tick\">\(label(t, step: step))</text>\n"
        }
        let lastEpoch = Int(epochs.max() ?? 1), firstEpoch = Int(epochs.min() ?? 1)
        let every = max(1, (lastEpoch - firstEpoch + 1 + 9) / 10)
        let xLabels = xTicks ?? stride(from: firstEpoch, through: lastEpoch, by: every).map { (Double($0), String($0)) }
        for (e, text) in xLabels {
            s += "<text x=\"\(f(x(e)))\" y=\"\(f(top + plotH + 16))\" text-anchor=\"middle\" class=\"tick\">\(HTML.escape(text))</text>\n"
        }
        s += "<text x=\"\(f(left + plotW / 2))\" y=\"\(f(height - 6))\" text-anchor=\"middle\" class=\"axis\">\(HTML.escape(xName))</text>\n"
        s += "<rect x=\"\(f(left))\" y=\"\(f(top))\" width=\"\(f(plotW))\" height=\"\(f(plotH))\" fill=\"none\" stroke=\"#888888\"/>\n"
        // Series and legend.
        var legendX = left
        for item in series {
            let points = item.points.filter { $0.1.isFinite }
            if points.count > 1 {
                let path = points.map { "\(f(x($0.0))),\(f(y($0.1)))" }.joined(separator: " ")
                s += "<polyline points=\"\(path)\" fill=\"none\" stroke=\"\(item.colour)\" stroke-width=\"2\"/>\n"
            }
            for (e, v) in points {
                s += "<circle cx=\"\(f(x(e)))\" cy=\"\(f(y(v)))\" r=\"3\" fill=\"\(item.colour)\"><title>\(HTML.escape(item.name)), "
                    + "\(HTML.escape(xName)) \(xTicks == nil ? String(Int(e)) : String(format: "%.6g", e)): \(tooltip(v))</title></circle>\n"
            }
            s += "<rect x=\"\(f(legendX))\" y=\"27\" width=\"14\" height=\"4\" fill=\"\(item.colour)\"/>\n"
            s += "<text x=\"\(f(legendX + 18))\" y=\"33\" class=\"legend\">\(HTML.escape(item.name))</text>\n"
            legendX += 26 + Double(item.name.count) * 6.6
        }
        s += "</svg>"
        return s
    }
}

/// HTML text helpers.
public enum HTML {
    /// `text` with &, <, >, " and ' escaped, for element content and quoted attributes.
    public static func escape(_ text: String) -> String {
        escaping(Substring(text).unicodeScalars, htmlEscapes)
    }

    private static let htmlEscapes: [Unicode.Scalar: String] = ["&": "&amp;", "<": "&lt;", ">": "&gt;", "\"": "&quot;",
                                                                 "'": "&#39;"]
}
