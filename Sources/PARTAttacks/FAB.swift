import PARTEngine
import PARTNN

/// Targeted FAB as AutoAttack's "fab-t" runs it (Croce & Hein, ICML 2020, "Minimally distorted
/// adversarial examples with a fast adaptive boundary attack"), L-inf, under an epsilon map.
///
/// FAB looks for the smallest perturbation that changes the decision. Towards target t it
/// linearises f = z_t - z_y at the current point x_k and projects both x_k and the original x
/// onto the hyperplane f(x_k) + ∇f · (x' - x_k) = 0 inside [0, 1], giving steps d_k and d_0 of
/// sizes δ_k and δ_0; then
///
///     alpha   = min(δ_k / (δ_k + δ_0), alpha_max)
///     x_{k+1} = clamp((x_k + eta d_k)(1 - alpha) + (x + eta d_0) alpha, 0, 1)
///
/// and when x_{k+1} is misclassified it steps back to x + beta (x_{k+1} - x). Sizes are measured
/// in the map-weighted norm ||d||_m = max_i |d_i| / map_i (`FABKernels`), whose unit ball is the
/// map's box: so the L-inf box is the per-entry map box ∩ [0, 1], entries with map 0 never move,
/// and a misclassified point with ||x' - x||_m <= 1 is an adversarial example within the budget.
/// With a constant map these are the reference algorithm's steps (alpha_max 0.1, eta 1.05,
/// beta 0.9).
///
/// Targets are the min(targets, classes - 1) highest non-true classes of the clean logits, in
/// turn, each run only on the rows still robust; restart 0 starts at x, restart r > 0 at
/// x + map ⊙ t / (2 max|t|) with t ~ U(-1, 1) keyed by (seed, fab, dataset index,
/// k * restarts + r) for target rank k. Only rows correctly classified when clean are attacked.
/// A row is dropped once it has an adversarial example within the budget (the reference keeps
/// shrinking it, which changes no robust-accuracy figure). FAB has no loss to keep a best point
/// of: a row never fooled within its budget returns its clean image.
public struct FABTargeted: Attack, ClassCountNotes {
    public let targets: Int
    public let iterations: Int
    public let restarts: Int
    /// Largest weight of the step from the original point.
    public let alphaMax: Float = 0.1
    /// Overshoot of each projection.
    public let eta: Float = 1.05
    /// Step back towards the original point after crossing the boundary.
    public let beta: Float = 0.9

    public init(targets: Int = 9, iterations: Int = 100, restarts: Int = 1) {
        self.targets = targets
        self.iterations = iterations
        self.restarts = restarts
    }

    public var name: String { "fab-t" }

    public func notes(for model: ImageClassifier) -> [String] {
        targetNote(asked: targets, classes: model.numClasses).map { [$0] } ?? []
    }

    public func perturb(_ model: ImageClassifier, _ batch: AttackBatch, seed: UInt64) throws -> Tensor {
        try TargetedDriver(name: name, targets: targets, iterations: iterations, restarts: restarts)
            .run(model, batch) { rows, targetOfRow, step, restart, outcome in
                try attack(model, batch, rows: rows, targets: targetOfRow, seed: seed, step: step,
                           randomStart: restart > 0, outcome: &outcome)
            }
    }

    /// One FAB run towards `targets[row]` on caller rows `rows`.
    private func attack(_ model: ImageClassifier, _ batch: AttackBatch, rows: [Int], targets targetOfRow: [Int32],
                        seed: UInt64, step: Int, randomStart: Bool, outcome: inout Outcome) throws {
        var set = WorkingSet(rows: rows)
        var slots = batch.subset(set.rows)
        var targets = set.rows.map { targetOfRow[$0] }
        var x = slots.images
        if randomStart {
            x = APGDKernels.normalizedUniformStart(slots.images, map: slots.budget.values, scale: 0.5, seed: seed,
                                                   indices: slots.indices, step: step, purpose: .fab)
        }
        let loss = TargetedMarginLoss()
        for _ in 0..<iterations {
            if set.liveCount == 0 { break }
            if let order = set.compaction() {
                slots = slots.subset(order)
                targets = targets.gathered(order)
                x = x.gatherRows(order)
            }
            let origin = slots.images, map = slots.budget.values
            let pass = try AttackPass.lossGradient(model, at: x, batch: slots, loss: loss, targets: targets)
            let p = FABKernels.projections(current: x, origin: origin, gradient: pass.gradient, values: pass.values,
                                           map: map)
            let alphas = (0..<set.count).map { b -> Float in
                let fromCurrent = Swift.max(p.sizeCurrent[b], 1e-8), fromOrigin = Swift.max(p.sizeOrigin[b], 1e-8)
                return Swift.min(Swift.max(fromCurrent / (fromCurrent + fromOrigin), 0), alphaMax)
            }
            FABKernels.step(&x, origin: origin, fromCurrent: p.fromCurrent, fromOrigin: p.fromOrigin, alphas: alphas,
                            eta: eta, map: map)
            let predictions = try AttackPass.logits(model, x).argmaxRows()
            let distances = FABKernels.weightedDistances(x, origin: origin, map: map)
            var within: [Int] = [], crossed: [Int] = []
            for slot in set.liveSlots where predictions[slot] != slots.labels[slot] {
                if distances[slot] <= 1 { within.append(slot) } else { crossed.append(slot) }
            }
            if !within.isEmpty {
                // ||x - origin||_m <= 1 up to rounding of the division: land exactly inside the box.
                var inside = x.gatherRows(within)
                Perturbation.project(&inside, around: origin.gatherRows(within), map: map.gatherRows(within))
                outcome.recordAdversarial(within, rows: inside, in: set)
                for slot in within { set.retire(slot) }
            }
            FABKernels.pullBack(&x, origin: origin, rows: crossed, beta: beta, map: map)
        }
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
