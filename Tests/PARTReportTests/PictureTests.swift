import PARTTestSupport
import Foundation
import PARTCAM
import PARTEngine
import PARTNN
import XCTest
@testable import PARTReport

/// PNG encoding through libpng, the canvas and its font, the CAM grid's pixels and the .npz maps.
final class PictureTests: XCTestCase {
    func testPNGRoundTripsThroughLibpng() throws {
        var pixels = [UInt8]()
        for y in 0..<5 { for x in 0..<7 { pixels += [UInt8(x * 30), UInt8(y * 50), UInt8((x + y) * 10)] } }
        let image = RasterImage(width: 7, height: 5, channels: 3, pixels: pixels)
        let data = try image.pngData()
        XCTAssertEqual(Array(data.prefix(8)), [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A], "PNG signature")
        let back = try RasterImage.decodePNG(data, source: "memory")
        XCTAssertEqual([back.width, back.height, back.channels], [7, 5, 4])
        XCTAssertEqual(back.pixel(x: 6, y: 4), [180, 200, 100, 255])
        XCTAssertEqual(back.pixel(x: 0, y: 0), [0, 0, 0, 255])
        let gray = RasterImage(width: 2, height: 1, channels: 1, pixels: [7, 250])
        XCTAssertEqual(try RasterImage.decodePNG(gray.pngData(), source: "gray").pixel(x: 1, y: 0), [250, 250, 250, 255])
        XCTAssertThrowsError(try RasterImage.decodePNG(Data("not a png".utf8), source: "x.png")) {
            XCTAssert("\($0)".hasPrefix("x.png is not a readable PNG file"), "\($0)")
        }
    }

    func testTextIsDrawnFromTheGlyphs() {
        var canvas = Canvas(width: 20, height: 10, background: (255, 255, 255))
        canvas.text("1", x: 0, y: 0, scale: 1, colour: (0, 0, 0))
        // "1": ..#.. / .##.. / ..#.. ... / .###.
        func dark(_ x: Int, _ y: Int) -> Bool { canvas.pixels[(y * 20 + x) * 3] == 0 }
        XCTAssert(dark(2, 0) && !dark(1, 0) && dark(1, 1) && dark(1, 6) && dark(3, 6) && !dark(0, 6))
        XCTAssertEqual(BitmapFont.glyphs.count, 95 * 7)
        XCTAssertEqual(Canvas.textWidth("ab", scale: 2), 22)
    }

    /// A SmallCNN initialised by PyTorch (its CAMs are not all zero, unlike those of many
    /// untrained models) and random images.
    func tinyModelAndImages(count: Int = 3) throws -> (ImageClassifier, Tensor) {
        var rng = RNG(seed: 7)
        let (model, _) = try Checkpoint.loadModel(fixtureURL("smallcnn_torch_init.safetensors"), architecture: "small-cnn",
                                                  numClasses: 10, inputShape: (28, 28, 1), rng: &rng)
        let images = Tensor(shape: [count, 28, 28, 1], values: (0..<(count * 784)).map { _ in Float.random(in: 0..<1, using: &rng) })
        return (model, images)
    }

    /// A 256-entry table that is easy to check: red ramps up, blue down.
    let ramp: [Double] = (0..<256).flatMap { [Double($0) / 255, 0.5, 1 - Double($0) / 255] }

    func testTheGridShowsEachPanelAtItsPlace() throws {
        let (model, images) = try tinyModelAndImages()
        let budget = CAMBudget(method: GradCAM(), rule: ZScoreRule())
        let panels = try CAMPanels.compute(model, images: images, labels: [1, 2, 3], indices: [10, 11, 12], budget: budget,
                                           epsilon: 0.1, epsilonLow: 0.0875)
        // The panels are the library's maps, exactly.
        XCTAssertEqual(panels.budgets.scalars, try budget.budgets(model, images: images, epsilon: 0.1, epsilonLow: 0.0875).scalars)
        XCTAssertEqual(panels.importance.scalars, try budget.importance(model, images: images).scalars)
        // Not a degenerate case: the maps vary and both budgets occur.
        XCTAssert(panels.importance.scalars.contains { $0 > 0.2 } && panels.importance.scalars.contains { $0 < 0.05 })
        XCTAssertEqual(Set(panels.budgets.scalars), [0.1, 0.0875])

        let grid = CAMGrid(title: "test", classNames: (0..<10).map { "class \($0)" }, colormap: ramp)
        let picture = grid.render(panels)
        let g = grid.layout(for: panels)
        XCTAssertEqual(g.scale, 4)
        XCTAssertEqual([picture.width, picture.height], [g.width, g.height(rows: 3)])
        let decoded = try RasterImage.decodePNG(try picture.pngData(), source: "grid")
        XCTAssertEqual([decoded.width, decoded.height], [picture.width, picture.height])

        for i in 0..<3 {
            for (py, px) in [(0, 0), (13, 21), (27, 27), (5, 17)] {
                // The centre of the enlarged source pixel (px, py) of row i.
                func at(_ panel: Int) -> [UInt8] {
                    Array(decoded.pixel(x: g.panelX(panel) + px * g.scale + 1, y: g.rowY(i) + py * g.scale + 2).prefix(3))
                }
                let v = images[flat: i * 784 + py * 28 + px]
                let gray = UInt8((v * 255).rounded())
                XCTAssertEqual(at(0), [gray, gray, gray], "image, row \(i), pixel (\(px), \(py))")
                let u = panels.importance[flat: i * 784 + py * 28 + px]
                let k = u <= 0 ? 0 : min(255, Int(min(u, 1) * 256))
                XCTAssertEqual(at(2), [UInt8((Double(k) / 255 * 255).rounded()), 128, UInt8(((1 - Double(k) / 255) * 255).rounded())],
                               "importance, row \(i)")
                let full = panels.budgets[flat: i * 784 + py * 28 + px] >= 0.1
                XCTAssertEqual(at(3), full ? [255, 255, 255] : [48, 48, 48], "eps map, row \(i)")
                // The overlay is half the image and half the coloured, upsampled CAM.
                let heat = Bicubic.resize(panels.cams, height: 28, width: 28)[flat: i * 784 + py * 28 + px]
                let h = heat <= 0 ? 0 : min(255, Int(min(heat, 1) * 256))
                let red = (0.5 * Float(UInt8((Double(h) / 255 * 255).rounded())) + 0.5 * Float(gray)).rounded()
                XCTAssertEqual(at(1)[0], UInt8(red), "overlay, row \(i)")
            }
        }
        // The text column is drawn (dark ink) and the background stays white elsewhere.
        let textPixels = (g.rowY(0)..<(g.rowY(0) + 80)).flatMap { y in
            (g.textX..<(g.textX + 200)).map { decoded.pixel(x: $0, y: y)[0] }
        }
        XCTAssert(textPixels.contains { $0 < 100 } && textPixels.contains(255))
        XCTAssertEqual(decoded.pixel(x: picture.width - 2, y: 1), [255, 255, 255, 255])
    }

    func testMapsArchiveHoldsTheArraysNumPyReads() throws {
        let (model, images) = try tinyModelAndImages(count: 2)
        let panels = try CAMPanels.compute(model, images: images, labels: [4, 5], indices: [0, 1],
                                           budget: CAMBudget(method: GradCAM(), rule: ZScoreRule()), epsilon: 0.1,
                                           epsilonLow: 0.05)
        let url = try temporaryDirectory().appendingPathComponent("maps.npz")
        try NPZ.write(panels.arrays, to: url)
        let arrays = try NPZ.read(url)
        XCTAssertEqual(Set(arrays.keys), ["images", "cams", "importance", "eps_maps", "labels", "predictions", "indices",
                                          "full_eps_share", "eps", "eps_low"])
        XCTAssertEqual(arrays["cams"]?.shape, panels.cams.shape)
        XCTAssertEqual(arrays["eps_maps"]?.shape, [2, 28, 28, 1])
        XCTAssertEqual(arrays["eps_maps"]?.floats, panels.budgets.scalars)
        XCTAssertEqual(arrays["importance"]?.floats, panels.importance.scalars)
        XCTAssertEqual(arrays["labels"]?.int64s, [4, 5])
        XCTAssertEqual(arrays["eps_low"]?.shape, [])
        // The zip's own structure: local header first, end record last.
        let bytes = Array(try Data(contentsOf: url))
        XCTAssertEqual(Array(bytes.prefix(4)), [0x50, 0x4B, 0x03, 0x04])
        XCTAssertEqual(Array(bytes.suffix(22).prefix(4)), [0x50, 0x4B, 0x05, 0x06])
        // Every .npy header is padded to a multiple of 64 bytes, as numpy writes it.
        XCTAssertEqual((10 + Int(NPYArray(int64: [1]).npy[8])) % 64, 0)
    }

    /// Entries of matplotlib's jet (`matplotlib.cm.jet(i)[:3]`, printed by matplotlib 3).
    func testJetIsMatplotlibs() {
        let expected: [Int: [Double]] = [0: [0, 0, 0.5], 40: [0, 0.12745098039215685, 1], 128: [0.4901960784313725, 1, 0.4775458570524984],
                                         200: [1, 0.46550472040668145, 0], 255: [0.5, 0, 0]]
        XCTAssertEqual(JetColormap.table.count, 768)
        for (i, rgb) in expected {
            for k in 0..<3 { XCTAssertEqual(JetColormap.table[3 * i + k], rgb[k], accuracy: 1e-12, "entry \(i)") }
        }
    }
}
