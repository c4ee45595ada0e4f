import PARTAttacks
import PARTCAM
import PARTEngine
import PARTNN

/// Where a batch's epsilon map comes from (docs/architecture.md#epsilon-map-providers).
public protocol BudgetProvider {
    var name: String { get }
    /// The budget for `images` [N, H, W, C] under the current model.
    func budget(_ model: ImageClassifier, images: Tensor) throws -> EpsilonMap
}

/// The same epsilon everywhere: plain adversarial training, and PART's burn-in.
public struct ConstantBudget: BudgetProvider {
    public let epsilon: Float
    public init(epsilon: Float) { self.epsilon = epsilon }
    public var name: String { "constant" }

    public func budget(_ model: ImageClassifier, images: Tensor) throws -> EpsilonMap {
        try EpsilonMap.constant(epsilon, shape: images.shape)
    }
}

/// PART's pixel-reweighted budget: eps on the pixels a CAM marks important, epsLow elsewhere,
/// computed from the batch's own images (so maps stay aligned under shuffling and augmentation).
public struct CAMBudgetProvider: BudgetProvider {
    public let cam: CAMBudget
    public let epsilon: Float
    public let epsilonLow: Float

    public var name: String { "\(cam.method.name)/\(cam.rule.name)" }

    public func budget(_ model: ImageClassifier, images: Tensor) throws -> EpsilonMap {
        try EpsilonMap(cam.budgets(model, images: images, epsilon: epsilon, epsilonLow: epsilonLow))
    }
}

/// The budget of each epoch: a constant map for the first `burnIn` epochs (CAMs of an untrained
/// model are noise), then `main`.
public struct BudgetSchedule {
    public let burnIn: Int
    public let burnInProvider: BudgetProvider
    public let main: BudgetProvider

    /// The provider of epoch `epoch` (1-based).
    public func provider(epoch: Int) -> BudgetProvider { epoch > burnIn ? main : burnInProvider }
}

extension BudgetSchedule {
    /// The schedule a configuration asks for (a region budget's spec must parse: see
    /// `TrainingConfig.problem()`).
    public init(_ config: TrainingConfig) throws {
        let constant = ConstantBudget(epsilon: config.epsilon)
        switch config.budget {
        case .constant:
            self.init(burnIn: 0, burnInProvider: constant, main: constant)
        case .regions:
            let regions = try RegionBudget(spec: config.regions ?? "", epsilon: config.epsilon)
            self.init(burnIn: 0, burnInProvider: regions, main: regions)
        case .cam:
            let cam = CAMBudget(method: config.cam.method, rule: config.mapRule.rule, layer: config.camLayer)
            self.init(burnIn: config.burnIn, burnInProvider: constant,
                      main: CAMBudgetProvider(cam: cam, epsilon: config.epsilon, epsilonLow: config.epsilonLow))
        }
    }
}

/// A budget fixed in advance: eps everywhere except on named regions of the image, where it is
/// lower (the paper's Fig. 1 experiment: does lowering the budget of some pixels change what
/// the model learns there?). `--regions top-left=6/255,centre=4/255` with `--eps 8/255`.
///
/// Regions of an H x W image: the quadrants `top-left`, `top-right`, `bottom-left` and
/// `bottom-right` (rows 0..<H/2 are the top, the rest the bottom; columns likewise), and
/// `centre`, the central box of half the side (H/2 rows from (H - H/2)/2, likewise across).
/// Where regions overlap the lower value holds; every channel of a pixel gets the pixel's value.
public struct RegionBudget: BudgetProvider, Sendable {
    public enum Region: String, CaseIterable, Sendable {
        case topLeft = "top-left"
        case topRight = "top-right"
        case bottomLeft = "bottom-left"
        case bottomRight = "bottom-right"
        case centre

        /// The rows and columns of the region in an image of `height` x `width`.
        public func box(height: Int, width: Int) -> (rows: Range<Int>, columns: Range<Int>) {
            let (h, w) = (height / 2, width / 2)
            switch self {
            case .topLeft: return (0..<h, 0..<w)
            case .topRight: return (0..<h, w..<width)
            case .bottomLeft: return (h..<height, 0..<w)
            case .bottomRight: return (h..<height, w..<width)
            case .centre:
                let (top, left) = ((height - h) / 2, (width - w) / 2)
                return (top..<(top + h), left..<(left + w))
            }
        }
    }

    public let epsilon: Float
    /// Each named region and its budget, in the order given.
    public let regions: [(region: Region, epsilon: Float)]

    /// Reads `spec`, items `region=value` separated by commas (values decimals or fractions
    /// such as 6/255, each in [0, epsilon]); a `RegionSpecError` names the first bad item.
    public init(spec: String, epsilon: Float) throws {
        self.epsilon = epsilon
        let known = Region.allCases.map(\.rawValue).joined(separator: ", ")
        guard !spec.trimmingCharacters(in: .whitespaces).isEmpty else {
            throw RegionSpecError("--budget regions needs --regions, e.g. top-left=6/255,centre=4/255 (regions: \(known))")
        }
        var regions = [(region: Region, epsilon: Float)]()
        for item in spec.split(separator: ",", omittingEmptySubsequences: false).map({ $0.trimmingCharacters(in: .whitespaces) }) {
            let parts = item.split(separator: "=", omittingEmptySubsequences: false).map(String.init)
            guard parts.count == 2 else {
                throw RegionSpecError("--regions takes region=eps items separated by commas, e.g. top-left=6/255,centre=4/255; "
                                      + "got '\(messageText(item, limit: 40))'")
            }
            guard let region = Region(rawValue: parts[0].lowercased()) else {
                throw RegionSpecError("--regions: unknown region '\(messageText(parts[0], limit: 40))' (known: \(known))")
            }
            guard let value = AttackCatalog.number(parts[1]) else {
                throw RegionSpecError("--regions: \(region.rawValue) takes a decimal or a fraction such as 6/255, "
                                      + "got '\(messageText(parts[1], limit: 40))'")
            }
            guard value >= 0 && value <= epsilon else {
                throw RegionSpecError("--regions: \(region.rawValue)=\(parts[1]) must lie in [0, eps] (eps = \(epsilon)): "
                                      + "a region's budget is lowered, never raised")
            }
            guard !regions.contains(where: { $0.region == region }) else {
                throw RegionSpecError("--regions names \(region.rawValue) twice")
            }
            regions.append((region, value))
        }
        self.regions = regions
    }

    public var name: String { "regions" }

    /// The per-pixel budget of an image of `height` x `width`, row-major.
    public func pixelMap(height: Int, width: Int) -> [Float] {
        var map = [Float](repeating: epsilon, count: height * width)
        for (region, value) in regions {
            let (rows, columns) = region.box(height: height, width: width)
            for r in rows { for c in columns { map[r * width + c] = Swift.min(map[r * width + c], value) } }
        }
        return map
    }

    /// The same map for every image of the batch, every channel of a pixel alike.
    public func budget(_ model: ImageClassifier, images: Tensor) throws -> EpsilonMap {
        guard images.shape.count == 4 else { throw RegionSpecError("a region budget needs images [N, H, W, C], got \(images.shape)") }
        let (n, h, w, c) = (images.shape[0], images.shape[1], images.shape[2], images.shape[3])
        let pixels = pixelMap(height: h, width: w)
        var values = [Float](repeating: 0, count: n * h * w * c)
        for i in 0..<n {
            for p in 0..<(h * w) {
                for k in 0..<c { values[(i * h * w + p) * c + k] = pixels[p] }
            }
        }
        return try EpsilonMap(Tensor(shape: images.shape, values: values))
    }
}

/// A `--regions` spec that does not parse, in one line.
public struct RegionSpecError: Error, CustomStringConvertible, Sendable {
    public let description: String
    public init(_ description: String) { self.description = description }
}
