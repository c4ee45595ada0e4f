import PARTEngine
import PARTNN

/// Targeted FAB as AutoAttack's "fab-t" runs it (Croce & Hein, ICML 2020, "Minimally distorted
/// adversarial examples with a fast adaptive boundary attack"), L-inf under an epsilon map or L2.
///
/// FAB looks for the smallest perturbation that changes the decision. Towards target t it
/// linearises f = z_t - z_y at the current point x_k and projects both x_k and the original x
/// onto the hyperplane f(x_k) + ∇f · (x' - x_k) = 0 inside [0, 1], giving steps d_k and d_0 of
/// sizes δ_k and δ_0; then
///
///     alpha   = min(δ_k / (δ_k + δ_0), alpha_max)
///     x_{k+1} = clamp((x_k + eta d_k)(1 - alpha) + (x + eta d_0) alpha, 0, 1)
///
/// and when x_{k+1} is misclassified it steps back to x + beta (x_{k+1} - x). In L-inf, sizes are
/// measured in the map-weighted norm ||d||_m = max_i |d_i| / map_i (`FABKernels`), whose unit
/// ball is the map's box: so the L-inf box is the per-entry map box ∩ [0, 1], entries with map 0
/// never move, and a misclassified point with ||x' - x||_m <= 1 is an adversarial example within
/// the budget. With `norm` .l2 the projections and sizes are Euclidean (`FABKernels.projectionsL2`)
/// and the budget is the ball of the radius. With a constant map these are the reference
/// algorithm's steps (alpha_max 0.1, eta 1.05, beta 0.9).
///
/// Targets are the min(targets, classes - 1) highest non-true classes of the clean logits, in
/// turn, each run only on the rows still robust; restart 0 starts at x, restart r > 0 at
/// x + map ⊙ t / (2 max|t|) with t ~ U(-1, 1) (L2: x + radius n / (2 ||n||), n ~ N(0, I)) keyed
/// by (seed, fab, dataset index, k * restarts + r) for target rank k. Only rows correctly
/// classified when clean are attacked. A row is dropped once it has an adversarial example within
/// the budget (the reference keeps shrinking it, which changes no robust-accuracy figure). FAB has
/// no loss to keep a best point of: a row never fooled within its budget returns its clean image.
public typealias FABTargeted = TargetedAttack<FABTargetedMethod>

/// FAB-T's run towards the targets (`FABTargeted`): restart 0 from x, the others from a random start.
public enum FABTargetedMethod: TargetedMethod {
    public static let name = "fab-t"

    public static func notes(classes: Int) -> [String] { [] }

    public static func run(iterations: Int, norm: Norm, classes: Int) -> TargetedRun {
        let run = FABRun(iterations: iterations, norm: norm)
        return TargetedRun { model, batch, rows, targets, seed, step, restart, outcome in
            try run.attack(model, batch, rows: rows, targets: targets, seed: seed, step: step, randomStart: restart > 0,
                           outcome: &outcome)
        }
    }
}

/// Untargeted FAB as AutoAttack's "fab" runs it (the "plus" versions): at every iteration the
/// linearised boundary is that of the class j != y closest to it, the smallest
/// |z_j - z_y| / ||∇(z_j - z_y)||_* (the dual norm: the map-weighted L1 norm for L-inf, L2 for
/// L2), found with one gradient per class; everything else is `FABTargeted`'s. Restart 0 starts
/// at x, restart r > 0 at a random start keyed by (seed, fab, dataset index, r).
public struct FABUntargeted: L2Attack {
    public let iterations: Int
    public let restarts: Int
    public let threat: Threat

    public init(iterations: Int = 100, restarts: Int = 5, norm: Norm = .linf, radius: Float? = nil) {
        self.iterations = iterations
        self.restarts = restarts
        threat = Threat(norm, radius: radius)
    }

    public var name: String { norm == .l2 ? "fab-l2" : "fab" }

    public func perturb(_ model: ImageClassifier, _ batch: AttackBatch, seed: UInt64) throws -> Tensor {
        try requireSetting(iterations >= 0, name, "iterations must be 0 or more, got \(iterations)")
        try requireSetting(restarts >= 1, name, "restarts must be at least 1, got \(restarts)")
        try validateAttackInput(model, batch)
        let batch = try threatBatch(batch)
        var outcome = Outcome(batch)
        let (rows, _) = try rowsToAttack(model, batch, attack: name, outcome: &outcome)
        let run = FABRun(iterations: iterations, norm: norm)
        for restart in 0..<restarts {
            let remaining = outcome.unfooled(rows)
            if remaining.isEmpty { break }
            try run.attack(model, batch.part(restart, of: restarts), rows: remaining, targets: nil, seed: seed, step: restart,
                           randomStart: restart > 0, outcome: &outcome)
        }
        return outcome.images
    }
}

/// One FAB run (a start and `iterations` steps) on some rows of a batch, targeted or not. Under
/// L2 the batch's budget is the constant map of the radius (`threatBatch`).
struct FABRun {
    let iterations: Int
    let norm: Norm
    /// Largest weight of the step from the original point.
    let alphaMax: Float = 0.1
    /// Overshoot of each projection.
    let eta: Float = 1.05
    /// Step back towards the original point after crossing the boundary.
    let beta: Float = 0.9

    /// Attacks caller rows `rows` towards `targets[row]` (nil: untargeted) and records the rows it
    /// fools within the budget into `outcome`.
    func attack(_ model: ImageClassifier, _ batch: AttackBatch, rows: [Int], targets targetOfRow: [Int32]?,
                seed: UInt64, step: Int, randomStart: Bool, outcome: inout Outcome) throws {
        var set = WorkingSet(rows: rows)
        var slots = batch.subset(set.rows)
        var targets = targetOfRow.map { t in set.rows.map { t[$0] } }
        let radius = slots.budget.constantValue ?? 0
        var x = slots.images
        if randomStart {
            x = norm == .l2
                ? L2Ball.sphereStart(slots.images, radius: radius, scale: 0.5, seed: seed, indices: slots.indices,
                                     step: step, purpose: .fab)
                : APGDKernels.normalizedUniformStart(slots.images, map: slots.budget.values, scale: 0.5, seed: seed,
                                                     indices: slots.indices, step: step, purpose: .fab)
        }
        for i in 0..<iterations {
            if set.liveCount == 0 { break }
            defer { slots.progress?.steps(i + 1, of: iterations) }
            if let order = set.compaction() {
                slots = slots.subset(order)
                targets = targets?.gathered(order)
                x = x.gatherRows(order)
            }
            let origin = slots.images, map = slots.budget.values
            let (values, gradient) = try linearize(model, at: x, slots: slots, targets: targets)
            let p = FABKernels.projections(current: x, origin: origin, gradient: gradient, values: values,
                                           map: norm == .l2 ? nil : map)
            let alphas = (0..<set.count).map { b -> Float in
                let fromCurrent = Swift.max(p.sizeCurrent[b], 1e-8), fromOrigin = Swift.max(p.sizeOrigin[b], 1e-8)
                return Swift.min(Swift.max(fromCurrent / (fromCurrent + fromOrigin), 0), alphaMax)
            }
            FABKernels.step(&x, origin: origin, fromCurrent: p.fromCurrent, fromOrigin: p.fromOrigin, alphas: alphas,
                            eta: eta, map: map)
            let predictions = try AttackPass.logits(model, x).argmaxRows()
            let distances = norm == .l2
                ? Tensor.difference(x, origin).rowNorms().map { radius > 0 ? $0 / radius : .infinity }
                : FABKernels.weightedDistances(x, origin: origin, map: map)
            var within: [Int] = [], crossed: [Int] = []
            for slot in set.liveSlots where predictions[slot] != slots.labels[slot] {
                if distances[slot] <= 1 { within.append(slot) } else { crossed.append(slot) }
            }
            if !within.isEmpty {
                // Within the budget up to rounding of the division: land exactly inside it.
                var inside = x.gatherRows(within)
                if norm == .l2 {
                    L2Ball.project(&inside, around: origin.gatherRows(within), radius: radius)
                } else {
                    Perturbation.project(&inside, around: origin.gatherRows(within), map: map.gatherRows(within))
                }
                outcome.recordAdversarial(within, rows: inside, in: set)
                for slot in within { set.retire(slot) }
            }
            FABKernels.pullBack(&x, origin: origin, rows: crossed, beta: beta, map: map)
        }
    }

    /// f and ∇f at x per slot: towards the slot's target, or (untargeted) towards the class whose
    /// linearised boundary is nearest, |f_j| / (1e-12 + ||∇f_j||_*) smallest over j != y.
    private func linearize(_ model: ImageClassifier, at x: Tensor, slots: AttackBatch, targets: [Int32]?) throws
        -> (values: [Float], gradient: Tensor) {
        let loss = TargetedMarginLoss()
        if let targets {
            let pass = try AttackPass.lossGradient(model, at: x, batch: slots, loss: loss, targets: targets)
            return (pass.values, pass.gradient)
        }
        let k = model.numClasses, n = slots.count
        var values = [Float](repeating: 0, count: n)
        var gradient = Tensor(shape: x.shape)
        var nearest = [Float](repeating: .infinity, count: n)
        for offset in 1..<k {
            let classes = slots.labels.map { Int32((Int($0) + offset) % k) }
            let pass = try AttackPass.lossGradient(model, at: x, batch: slots, loss: loss, targets: classes)
            let duals = norm == .l2 ? pass.gradient.rowNorms()
                                    : FABKernels.weightedDualNorms(pass.gradient, map: slots.budget.values)
            var closer: [Int] = []
            for b in 0..<n {
                let distance = Swift.abs(pass.values[b]) / (1e-12 + duals[b])
                if distance < nearest[b] || (offset == 1 && !distance.isFinite) {
                    nearest[b] = distance
                    values[b] = pass.values[b]
                    closer.append(b)
                }
            }
            gradient.copyRows(closer, from: pass.gradient)
        }
        return (values, gradient)
    }
}

/// FAB-T's f = z_t - z_y (positive once the target outscores the label), per example.
struct TargetedMarginLoss: AttackLoss {
    var name: String { "targeted-margin" }

    func evaluate(logits: Tensor, batch: AttackBatch, targets: [Int32]?) throws -> (values: [Float], gradient: Tensor) {
        guard let targets else { throw AttackError("the targeted margin needs targets") }
        return Margins.targeted(logits: logits, labels: batch.labels, targets: targets)
    }
}
