import Foundation
import PARTAttacks
import PARTCAM
import PARTEngine
import PARTNN

/// Everything PART computes on the way from an image to its epsilon map, for a few images: what
/// `part cam` draws and saves.
public struct CAMPanels {
    /// Images [N, H, W, C] in [0, 1], their labels and dataset indices.
    public let images: Tensor
    public let labels: [Int32]
    public let indices: [Int]
    /// Normalised CAMs [N, h, w] at the CAM layer's resolution, for the predicted classes.
    public let cams: Tensor
    /// The upsampled, squared maps [N, H, W] the map rule reads.
    public let importance: Tensor
    /// The epsilon maps [N, H, W, C].
    public let budgets: Tensor
    public let predictions: [Int32]
    public let epsilon: Float
    public let epsilonLow: Float
    /// "gradcam", "zscore".
    public let method: String
    public let rule: String

    /// The CAMs of `model` for `images`, upsampled and turned into budgets exactly as training
    /// does it (`CAMBudget`: the same CAM pass, PIL bicubic upsampling, squaring, the rule).
    public static func compute(_ model: ImageClassifier, images: Tensor, labels: [Int32], indices: [Int],
                               budget: CAMBudget, epsilon: Float, epsilonLow: Float) throws -> CAMPanels {
        // Non-finite logits have no arg-max: every prediction would read as class 0 and every map
        // as noise. Refused as part eval refuses them.
        if try model.forward(images, mode: .eval).firstNonFinite() != nil {
            let range = indices.isEmpty ? "" : " \(indices[0])..<\(indices[indices.count - 1] + 1)"
            throw ReportError("the model's logits for images\(range) are not finite: the checkpoint is corrupt or its "
                              + "training diverged")
        }
        let (cams, predictions) = try ClassActivation.maps(model, images: images, method: budget.method, layer: budget.layer)
        let importance = Bicubic.resize(cams, height: images.shape[1], width: images.shape[2]).squared()
        let budgets = try budget.rule.budgets(importance, channels: images.shape[3], epsilon: epsilon, epsilonLow: epsilonLow)
        return CAMPanels(images: images, labels: labels, indices: indices, cams: cams, importance: importance,
                         budgets: budgets, predictions: predictions, epsilon: epsilon, epsilonLow: epsilonLow,
                         method: budget.method.name, rule: budget.rule.name)
    }

    public var count: Int { labels.count }

    /// Share of image `i`'s entries at full eps.
    public func fullShare(_ i: Int) -> Double {
        Perturbation.fraction(of: budgets.slice(i..<(i + 1)), atLeast: epsilon)
    }

    /// The panels of several batches, in order.
    public static func concatenate(_ parts: [CAMPanels]) throws -> CAMPanels {
        guard let first = parts.first else { throw ReportError("no images to draw") }
        func joined(_ key: (CAMPanels) -> Tensor) -> Tensor {
            let tensors = parts.map(key)
            var out = Tensor.uninitialized(shape: [tensors.reduce(0) { $0 + $1.shape[0] }] + key(first).shape.dropFirst())
            var row = 0
            for t in tensors {
                out.scatterRows(t, to: Array(row..<(row + t.shape[0])))
                row += t.shape[0]
            }
            return out
        }
        return CAMPanels(images: joined(\.images), labels: parts.flatMap(\.labels), indices: parts.flatMap(\.indices),
                         cams: joined(\.cams), importance: joined(\.importance), budgets: joined(\.budgets),
                         predictions: parts.flatMap(\.predictions), epsilon: first.epsilon, epsilonLow: first.epsilonLow,
                         method: first.method, rule: first.rule)
    }

    /// The first `n` images' panels.
    public func prefix(_ n: Int) -> CAMPanels {
        let rows = Array(0..<min(n, count))
        return CAMPanels(images: images.gatherRows(rows), labels: Array(labels.prefix(n)), indices: Array(indices.prefix(n)),
                         cams: cams.gatherRows(rows), importance: importance.gatherRows(rows), budgets: budgets.gatherRows(rows),
                         predictions: Array(predictions.prefix(n)), epsilon: epsilon, epsilonLow: epsilonLow, method: method,
                         rule: rule)
    }

    /// The arrays of `--save-maps` (float32 unless noted; NHWC like every image here):
    /// images [N,H,W,C], cams [N,h,w], importance [N,H,W], eps_maps [N,H,W,C], labels,
    /// predictions and indices (int64 [N]), full_eps_share (float64 [N]), eps and eps_low (0-d).
    public var arrays: [(String, NPYArray)] {
        [
            ("images", NPYArray(images)),
            ("cams", NPYArray(cams)),
            ("importance", NPYArray(importance)),
            ("eps_maps", NPYArray(budgets)),
            ("labels", NPYArray(int64: labels.map(Int64.init))),
            ("predictions", NPYArray(int64: predictions.map(Int64.init))),
            ("indices", NPYArray(int64: indices.map(Int64.init))),
            ("full_eps_share", NPYArray(float64: (0..<count).map(fullShare))),
            ("eps", NPYArray(scalar: epsilon)),
            ("eps_low", NPYArray(scalar: epsilonLow)),
        ]
    }
}

/// The picture of `part cam`: one row per image with the image, its CAM laid over it as a heat
/// map, the upsampled importance map and the epsilon map, each enlarged to about 128 pixels,
/// and beside them the label, the prediction and the share of entries at full eps.
public struct CAMGrid {
    public var title: String
    public var subtitle: String
    public var classNames: [String]
    /// RGB lookup table of the heat maps (`table.count / 3` entries in [0, 1]): jet.
    public var colormap: [Double]
    /// Weight of the heat map over the image in the overlay.
    public var overlayWeight: Float = 0.5

    public init(title: String, subtitle: String = "", classNames: [String], colormap: [Double]) {
        self.title = title
        self.subtitle = subtitle
        self.classNames = classNames
        self.colormap = colormap
    }

    /// Geometry of a grid, in pixels.
    public struct Layout {
        public let scale: Int
        public let panel: Int
        public let margin = 16, gap = 8, rowGap = 12, textScale = 2
        public let imageWidth: Int, imageHeight: Int
        public let headerHeight: Int
        public let textColumnWidth = 300
        public let footerHeight = 46

        init(height: Int, width: Int, subtitle: Bool) {
            scale = max(1, 128 / max(height, width))
            imageWidth = width * scale
            imageHeight = height * scale
            panel = imageWidth
            headerHeight = (subtitle ? 3 : 2) * 22 + 6
        }

        /// Left edge of panel `k` (0: image, 1: overlay, 2: importance, 3: eps map).
        public func panelX(_ k: Int) -> Int { margin + k * (panel + gap) }
        /// Top edge of row `i`.
        public func rowY(_ i: Int) -> Int { margin + headerHeight + i * (imageHeight + rowGap) }
        public var textX: Int { panelX(4) + gap }
        public var width: Int { textX + textColumnWidth + margin }
        public func height(rows: Int) -> Int { rowY(rows) - rowGap + 12 + footerHeight + margin }
    }

    public func layout(for panels: CAMPanels) -> Layout {
        Layout(height: panels.images.shape[1], width: panels.images.shape[2], subtitle: !subtitle.isEmpty)
    }

    func name(_ c: Int32) -> String {
        Int(c) >= 0 && Int(c) < classNames.count ? classNames[Int(c)] : String(c)
    }

    /// `text` shortened from the left with "..." so that it fits `width` pixels.
    static func fitted(_ text: String, width: Int, scale: Int) -> String {
        guard Canvas.textWidth(text, scale: scale) > width else { return text }
        var t = Substring(text)
        while !t.isEmpty && Canvas.textWidth("..." + t, scale: scale) > width { t = t.dropFirst() }
        return "..." + t
    }

    public func render(_ panels: CAMPanels) -> RasterImage {
        let (n, h, w) = (panels.count, panels.images.shape[1], panels.images.shape[2])
        let g = layout(for: panels)
        var canvas = Canvas(width: g.width, height: g.height(rows: n))
        let ink: Canvas.Colour = (20, 20, 20), grey: Canvas.Colour = (90, 90, 90)
        let textWidth = g.width - 2 * g.margin

        // Header: title, subtitle, column names.
        var y = g.margin
        canvas.text(Self.fitted(title, width: textWidth, scale: 2), x: g.margin, y: y, scale: 2, colour: ink)
        y += 22
        if !subtitle.isEmpty {
            canvas.text(Self.fitted(subtitle, width: textWidth, scale: 2), x: g.margin, y: y, scale: 2, colour: grey)
            y += 22
        }
        let columns = ["image", "CAM", "upsampled", "eps map"]
        for (k, name) in columns.enumerated() {
            canvas.text(Self.fitted(name, width: g.panel, scale: 2), x: g.panelX(k), y: y + 6, scale: 2, colour: grey)
        }

        // The four pictures of every image.
        let image = Pixels.rgb(panels.images)
        let heat = Pixels.colored(Bicubic.resize(panels.cams, height: h, width: w), table: colormap)
        let overlay = Pixels.blend(image, heat, weight: overlayWeight)
        let importance = Pixels.colored(panels.importance, table: colormap)
        let budgets = Pixels.budgets(panels.budgets, epsilon: panels.epsilon)
        let size = h * w * 3
        for i in 0..<n {
            let top = g.rowY(i)
            for (k, picture) in [image, overlay, importance, budgets].enumerated() {
                canvas.draw(picture, offset: i * size, width: w, height: h, x: g.panelX(k), y: top, scale: g.scale)
            }
            let correct = panels.predictions[i] == panels.labels[i]
            let lines: [(String, Canvas.Colour)] = [
                ("#\(panels.indices[i])", grey),
                ("label " + name(panels.labels[i]), ink),
                ("pred  " + name(panels.predictions[i]), correct ? (0, 120, 40) : (200, 30, 30)),
                (String(format: "full eps %.1f%%", 100 * panels.fullShare(i)), ink),
            ]
            for (l, (text, colour)) in lines.enumerated() {
                canvas.text(Self.fitted(text, width: g.textColumnWidth, scale: 2), x: g.textX, y: top + l * 20, scale: 2,
                            colour: colour)
            }
        }

        // Legend: the heat-map scale and the two budget shades.
        let legendY = g.rowY(n) - g.rowGap + 12
        canvas.text("0", x: g.margin, y: legendY + 4, scale: 2, colour: ink)
        let barX = g.margin + 18, barWidth = 200
        let ramp = Tensor(shape: [1, barWidth], values: (0..<barWidth).map { Float($0) / Float(barWidth - 1) })
        let bar = Pixels.colored(ramp, table: colormap)
        for row in 0..<18 { canvas.draw(bar, width: barWidth, height: 1, x: barX, y: legendY + row, scale: 1) }
        canvas.text("1  CAM and upsampled map", x: barX + barWidth + 6, y: legendY + 4, scale: 2, colour: ink)
        let swatchY = legendY + 26
        canvas.fill(x: g.margin, y: swatchY, width: 18, height: 18, ink)
        canvas.fill(x: g.margin + 1, y: swatchY + 1, width: 16, height: 16, (255, 255, 255))
        let epsText = "eps " + Self.number(panels.epsilon)
        canvas.text(epsText, x: g.margin + 24, y: swatchY + 4, scale: 2, colour: ink)
        let lowX = g.margin + 24 + Canvas.textWidth(epsText, scale: 2) + 20
        canvas.fill(x: lowX, y: swatchY, width: 18, height: 18, (48, 48, 48))
        canvas.text("eps-low " + Self.number(panels.epsilonLow) + " (eps map)", x: lowX + 24, y: swatchY + 4, scale: 2,
                    colour: ink)
        return canvas.image
    }

    /// A budget as the user wrote it: up to 6 significant digits, no trailing zeros.
    /// A budget as printed in titles: "0.1", "0.0875".
    public static func number(_ v: Float) -> String { String(format: "%.6g", Double(v)) }
}
