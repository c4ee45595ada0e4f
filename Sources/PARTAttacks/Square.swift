import Foundation
import PARTEngine
import PARTNN

/// The Square attack (Andriushchenko, Croce, Flammarion & Hein, ECCV 2020, "Square Attack: a
/// query-efficient black-box adversarial attack via random search"), L-inf, under an epsilon map,
/// as AutoAttack's "square" runs it: forward passes only, no gradient.
///
/// Per example it keeps a best point and its margin z_y - max_{j != y} z_j (the CW margin loss,
/// minimised). It starts from vertical stripes, x + map ⊙ s with one sign per (channel, column),
/// and at iteration i proposes the best point with one square of side
/// round(sqrt(p_i · H · W)) repainted to x +- map (one sign per channel), keeping the proposal when
/// its margin is lower. The fraction p_i is `pInit` halved at iterations 10, 50, 200, 500, 1000,
/// 2000, 4000, 6000 and 8000: the paper's schedule, not rescaled to the query budget (AutoAttack's
/// `resc_schedule=False`). A row stops querying as soon as it is misclassified; that point is its
/// result, and a row never fooled returns its lowest-margin point.
///
/// Only rows correctly classified when clean are attacked; each restart runs on the rows not
/// fooled yet. Everything random is per example: the stripes, and each iteration's square
/// position (uniform over all H - s + 1 by W - s + 1 positions, as in the paper) and channel
/// signs, come from the stream keyed by (seed, square, dataset index, restart). The reference code
/// draws one position and one set of signs per iteration for the whole batch; only the side
/// length, a function of the iteration, is shared here.
///
/// With `norm` .l2 it is the L2 Square attack (`attackL2`, `SquareL2Kernels`): perturbations on the
/// sphere of the radius, each proposal moving the mass of one window into another.
public struct Square: L2Attack {
    public let queries: Int
    public let pInit: Float
    public let restarts: Int
    public let threat: Threat

    public init(queries: Int = 5000, pInit: Float = 0.8, restarts: Int = 1, norm: Norm = .linf, radius: Float? = nil) {
        self.queries = queries
        self.pInit = pInit
        self.restarts = restarts
        threat = Threat(norm, radius: radius)
    }

    public var name: String { norm == .l2 ? "square-l2" : "square" }

    /// The fraction of the image a square covers at iteration `iteration` (0-based).
    public static func fraction(iteration i: Int, pInit: Float) -> Float {
        let halvings: Int
        switch i {
        case ...10: halvings = 0
        case ...50: halvings = 1
        case ...200: halvings = 2
        case ...500: halvings = 3
        case ...1000: halvings = 4
        case ...2000: halvings = 5
        case ...4000: halvings = 6
        case ...6000: halvings = 7
        case ...8000: halvings = 8
        default: halvings = 9
        }
        return pInit / Float(1 << halvings)
    }

    /// The side of the square at iteration `iteration` in images of `height` x `width`:
    /// round(sqrt(p · H · W)) (halves to even, as Python's round), at least 1 and at most the
    /// image's shorter side.
    public static func side(iteration: Int, pInit: Float, height: Int, width: Int) -> Int {
        let p = Double(fraction(iteration: iteration, pInit: pInit))
        let side = Int((p * Double(height * width)).squareRoot().rounded(.toNearestOrEven))
        return Swift.min(Swift.max(side, 1), Swift.min(height, width))
    }

    public func perturb(_ model: ImageClassifier, _ batch: AttackBatch, seed: UInt64) throws -> Tensor {
        try requireSetting(queries >= 0, name, "queries must be 0 or more, got \(queries)")
        try requireSetting(pInit > 0 && pInit <= 1, name, "p-init must lie in (0, 1], got \(pInit)")
        try requireSetting(restarts >= 1, name, "restarts must be at least 1, got \(restarts)")
        try validateAttackInput(model, batch)
        let batch = try threatBatch(batch)
        var outcome = Outcome(batch)
        let (rows, _) = try rowsToAttack(model, batch, attack: name, outcome: &outcome)
        for restart in 0..<restarts {
            let remaining = outcome.unfooled(rows)
            if remaining.isEmpty { break }
            let share = batch.part(restart, of: restarts)
            if norm == .l2 {
                try attackL2(model, share, rows: remaining, seed: seed, restart: restart, outcome: &outcome)
            } else {
                try attack(model, share, rows: remaining, seed: seed, restart: restart, outcome: &outcome)
            }
        }
        return outcome.images
    }

    /// The margin loss max_{j != y} z_j - z_y per row (higher is better for the attack) and the
    /// predicted classes, from logits.
    func margins(_ logits: Tensor, _ slots: AttackBatch) throws -> (values: [Float], predictions: [Int32]) {
        let values = try CWMarginLoss().evaluate(logits: logits, batch: slots, targets: nil).values
        return (values, logits.argmaxRows())
    }

    private func attack(_ model: ImageClassifier, _ batch: AttackBatch, rows: [Int], seed: UInt64, restart: Int,
                        outcome: inout Outcome) throws {
        var r = SquareRows(batch, rows: rows, seed: seed, restart: restart)
        r.best = SquareKernels.stripeStart(r.slots.images, map: r.slots.budget.values, streams: &r.streams)
        var querier = SquareQueries(model, r.best)
        var predictions: [Int32]
        (r.bestValue, predictions) = try margins(try querier.start(r.best), r.slots)
        outcome.retireFooled(predictions, labels: r.slots.labels, of: r.best, set: &r.set)

        let height = r.best.shape[1], width = r.best.shape[2], channels = r.best.shape[3]
        var candidate = r.best
        var tops = [Int](), lefts = [Int](), signs = [Float]()
        for i in 0..<queries {
            if r.set.liveCount == 0 { break }
            defer { r.slots.progress?.steps(i + 1, of: queries) }
            if let order = r.compact() {
                candidate = r.best
                querier.gather(order)
            }
            let side = Square.side(iteration: i, pInit: pInit, height: height, width: width)
            let n = r.set.count
            tops.removeAll(keepingCapacity: true)
            lefts.removeAll(keepingCapacity: true)
            signs.removeAll(keepingCapacity: true)
            for slot in 0..<n {
                tops.append(Int(r.streams[slot].next() % UInt64(height - side + 1)))
                lefts.append(Int(r.streams[slot].next() % UInt64(width - side + 1)))
                for _ in 0..<channels { signs.append(r.streams[slot].next() >> 63 == 0 ? -1 : 1) }
            }
            SquareKernels.paint(&candidate, origin: r.slots.images, map: r.slots.budget.values, tops: tops, lefts: lefts,
                                signs: signs, side: side)
            let proposal = try margins(try querier.query(candidate, tops: tops, lefts: lefts, side: side), r.slots)
            predictions = proposal.predictions
            let accepted = (0..<n).map { proposal.values[$0] > r.bestValue[$0] || predictions[$0] != r.slots.labels[$0] }
            SquareKernels.settle(candidate: &candidate, best: &r.best, tops: tops, lefts: lefts, side: side,
                                 accepted: accepted)
            querier.settle(accepted: accepted)
            for slot in 0..<n where accepted[slot] { r.bestValue[slot] = proposal.values[slot] }
            outcome.retireFooled(predictions, labels: r.slots.labels, of: r.best, set: &r.set)
        }
        outcome.offerBest(r.set.liveSlots, of: r.best, losses: r.bestValue, in: r.set)
    }
}

/// The rows a Square run still attacks, kept together through the working set's compactions:
/// their batch, their random streams (keyed by (seed, square, dataset index, restart)), their
/// best points and the margins of those points.
struct SquareRows {
    var set: WorkingSet
    var slots: AttackBatch
    var streams: [KeyedStream]
    var best = Tensor(shape: [0])
    var bestValue = [Float]()

    init(_ batch: AttackBatch, rows: [Int], seed: UInt64, restart: Int) {
        set = WorkingSet(rows: rows)
        slots = batch.subset(set.rows)
        streams = slots.indices.map { KeyedStream(seed: seed, purpose: .square, index: $0, step: restart) }
    }

    /// Follows a compaction of the working set, if one is due; returns its order.
    @discardableResult
    mutating func compact() -> [Int]? {
        guard let order = set.compaction() else { return nil }
        slots = slots.subset(order)
        streams = streams.gathered(order)
        best = best.gatherRows(order)
        bestValue = bestValue.gathered(order)
        return order
    }
}

/// How Square queries the model. By default one full forward pass per query. When the model
/// starts with spatially local layers (`LocallyComputable`), it keeps those layers' activations
/// of each row's best point and, per query, recomputes only the window that the row's square
/// changes, from a patch of the candidate, then runs the rest of the model: on SmallCNN that
/// is about half the work of a query once the squares are small (from iteration 500 on).
/// Every row's logits still depend on that row alone. Off with `--without windows`.
struct SquareQueries {
    private let model: ImageClassifier
    private let prefix: LocalPrefix?
    /// The prefix's activations of the best points, and of the candidates (equal to them outside
    /// the windows of the last query).
    private var best = Tensor(shape: [0]), candidate = Tensor(shape: [0])
    /// The windows of the last query: origins in the prefix's output, and their sides.
    private var tops = [Int](), lefts = [Int](), windowHeight = 0, windowWidth = 0
    /// The window geometry per square side (the images keep their size through an attack).
    private var axes = [Int: (rows: WindowAxis, columns: WindowAxis)]()

    init(_ model: ImageClassifier, _ images: Tensor) {
        self.model = model
        let prefix = Optimizations.isEnabled(.windows) ? (model as? LocallyComputable)?.localPrefix : nil
        let usable = prefix.map { $0.outputLength(images.shape[1]) > 0 && $0.outputLength(images.shape[2]) > 0 } ?? false
        self.prefix = usable ? prefix : nil
    }

    /// Logits [N, K] (f32) of the starting points; they become the best points.
    mutating func start(_ images: Tensor) throws -> Tensor {
        guard let prefix else { return try AttackPass.logits(model, images) }
        best = try prefix.forward(try images.converted(to: Engine.attackPrecision))
        candidate = best
        return try prefix.logits(from: best).converted(to: .f32)
    }

    /// Logits [N, K] (f32) of `images`, which differ from the best points only inside the squares
    /// of side `side` at (tops[b], lefts[b]).
    mutating func query(_ images: Tensor, tops squareTops: [Int], lefts squareLefts: [Int], side: Int) throws -> Tensor {
        guard let prefix else { return try AttackPass.logits(model, images) }
        if axes[side] == nil {
            let height = images.shape[1], width = images.shape[2]
            guard let rows = prefix.axis(inputLength: height, changed: side),
                  let columns = prefix.axis(inputLength: width, changed: side) else {
                throw AttackError("square: a \(side)x\(side) square in \(height)x\(width) images has no window")
            }
            axes[side] = (rows, columns)
        }
        let (rows, columns) = axes[side]!
        let patches = Windows.gather(images, tops: squareTops.map { rows.inputOrigins[$0] },
                                     lefts: squareLefts.map { columns.inputOrigins[$0] },
                                     height: rows.patch, width: columns.patch)
        let windows = try prefix.forward(try patches.converted(to: Engine.attackPrecision))
        tops = squareTops.map { rows.outputOrigins[$0] }
        lefts = squareLefts.map { columns.outputOrigins[$0] }
        windowHeight = rows.window
        windowWidth = columns.window
        Windows.scatter(windows, into: &candidate, tops: tops, lefts: lefts)
        return try prefix.logits(from: candidate).converted(to: .f32)
    }

    /// After a query: accepted rows' windows become part of the best points' activations, the
    /// others are restored in the candidates'.
    mutating func settle(accepted: [Bool]) {
        guard prefix != nil else { return }
        Windows.settle(candidate: &candidate, best: &best, tops: tops, lefts: lefts, height: windowHeight,
                       width: windowWidth, accepted: accepted)
    }

    /// Keeps rows `order` (in that order), as the attack's working set does.
    mutating func gather(_ order: [Int]) {
        guard prefix != nil else { return }
        best = best.gatherRows(order)
        candidate = best
    }
}
