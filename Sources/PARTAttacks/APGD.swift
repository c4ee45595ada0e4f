import PARTEngine
import PARTNN

/// Auto-PGD, untargeted (Croce & Hein, ICML 2020, "Reliable evaluation of adversarial robustness
/// with an ensemble of diverse parameter-free attacks", Algorithm 1), L-inf under an epsilon map.
///
/// Per example, in delta/eps coordinates (a step of eta moves an entry by eta * map):
///
///     x_0     = P(x + map ⊙ t / max|t|),  t ~ U(-1, 1)         (random start)
///     z       = P(x_k + eta_k map ⊙ sign(∇L(x_k)))
///     x_{k+1} = P(x_k + a (z - x_k) + (1 - a)(x_k - x_{k-1}))   (a = 1 at k = 0, then 0.75)
///
/// with P the projection onto [x - map, x + map] ∩ [0, 1] and eta_0 = 2. With `norm` .l2 the
/// same run works in the L2 ball of the radius instead (AutoAttack's L2 rules): the start is
/// x + radius n / ||n|| with n ~ N(0, I), a step moves by eta_k radius along g / ||g||, and P
/// projects onto the ball and then [0, 1] (`L2Ball.momentumStep`). With `eot` > 1 each gradient
/// is the mean over that many passes (expectation over transformation, for models with
/// randomness: AutoAttack's "rand" version), and the loss and logits are the last pass's.
///
/// At the checkpoints (`checkpoints(iterations:)`) a row halves its step size and restarts from
/// its best point when at most rho of the steps since the last checkpoint increased the loss, or
/// when neither its step size nor its best loss changed since the last checkpoint.
///
/// As in AutoAttack, only rows correctly classified when clean are attacked, and each restart
/// runs on the rows not fooled yet. A row is dropped as soon as an iterate fools the model (that
/// iterate is its result), which changes no robust-accuracy figure and saves the remaining
/// passes. A row never fooled returns its highest-loss point over all restarts.
///
/// Deviations from the reference code, all per example: the random start of restart r is drawn
/// from the stream keyed by (seed, random start, dataset index, r); the first checkpoint counts
/// the first step as an increase when it raised the loss above the start's (the reference compares
/// it with an uninitialised 0).
public struct APGD: L2Attack, ClassCountNotes {
    /// The loss ascended: cross-entropy, Difference of Logits Ratio, or the CW margin.
    public enum Loss: String, Sendable {
        case ce, dlr, cw
    }

    public let loss: Loss
    public let iterations: Int
    public let restarts: Int
    /// The fraction of increasing steps below which the step size is halved.
    public let rho: Float
    public let threat: Threat
    /// Passes averaged per gradient (1: plain APGD).
    public let eot: Int

    public init(loss: Loss = .ce, iterations: Int = 100, restarts: Int = 1, rho: Float = 0.75, norm: Norm = .linf,
                radius: Float? = nil, eot: Int = 1) {
        self.loss = loss
        self.iterations = iterations
        self.restarts = restarts
        self.rho = rho
        threat = Threat(norm, radius: radius)
        self.eot = eot
    }

    /// "apgd-ce", "apgd-dlr", "apgd-cw"; "-l2" after it in the L2 ball.
    public var name: String { "apgd-\(loss.rawValue)" + (norm == .l2 ? "-l2" : "") }

    /// The iteration counts after which the step size is checked, for a run of `iterations`:
    /// the first after n_2 = max(⌊0.22 n⌋, 1) iterations, each next one after the previous
    /// period minus max(⌊0.03 n⌋, 1), but at least max(⌊0.06 n⌋, 1). This is the reference code's
    /// integer form of the paper's checkpoints w_j = ⌈p_j n⌉ with p_0 = 0, p_1 = 0.22 and
    /// p_{j+1} = p_j + max(p_j - p_{j-1} - 0.03, 0.06); for 100 iterations both give
    /// 22, 41, 57, 70, 80, 87, 93, 99.
    public static func checkpoints(iterations: Int) -> [Int] {
        guard iterations > 0 else { return [] }
        // Truncations of double products, bit for bit as the reference computes them.
        let n = Double(iterations)
        let first = Swift.max(Int(0.22 * n), 1), shortest = Swift.max(Int(0.06 * n), 1)
        let decrease = Swift.max(Int(0.03 * n), 1)
        var out: [Int] = [], period = first, at = first
        while at <= iterations {
            out.append(at)
            period = Swift.max(period - decrease, shortest)
            at += period
        }
        return out
    }

    /// DLR needs 3 classes; with fewer, APGD ascends cross-entropy instead.
    func attackLoss(classes: Int) -> AttackLoss {
        switch loss {
        case .ce: return CrossEntropyLoss()
        case .cw: return CWMarginLoss()
        case .dlr: return classes >= 3 ? DLRLoss() : CrossEntropyLoss()
        }
    }

    public func notes(for model: ImageClassifier) -> [String] {
        guard loss == .dlr && model.numClasses < 3 else { return [] }
        return ["DLR needs at least 3 classes and the model has \(model.numClasses), so cross-entropy is used"]
    }

    func validateSettings() throws {
        try requireSetting(iterations >= 0, name, "iterations must be 0 or more, got \(iterations)")
        try requireSetting(restarts >= 1, name, "restarts must be at least 1, got \(restarts)")
        try requireSetting(rho >= 0 && rho <= 1, name, "rho must lie in [0, 1], got \(rho)")
        try requireSetting(eot >= 1, name, "eot must be at least 1, got \(eot)")
    }

    public func perturb(_ model: ImageClassifier, _ batch: AttackBatch, seed: UInt64) throws -> Tensor {
        try validateSettings()
        try validateAttackInput(model, batch)
        let batch = try threatBatch(batch)
        var outcome = Outcome(batch)
        let (rows, _) = try rowsToAttack(model, batch, attack: name, outcome: &outcome)
        let run = APGDRun(iterations: iterations, rho: rho, loss: attackLoss(classes: model.numClasses), norm: norm,
                          eot: eot)
        for restart in 0..<restarts {
            let remaining = outcome.unfooled(rows)
            if remaining.isEmpty { break }
            try run.attack(model, batch.part(restart, of: restarts), rows: remaining, targets: nil, seed: seed, step: restart,
                           outcome: &outcome)
        }
        return outcome.images
    }
}

/// One APGD run (a start and `iterations` steps) on some rows of a batch: shared by APGD and
/// APGD-T, which differ only in loss and targets.
struct APGDRun {
    let iterations: Int
    let rho: Float
    let loss: AttackLoss
    /// .l2: the batch's budget is the constant map of the radius (`threatBatch`).
    var norm: Norm = .linf
    var eot: Int = 1
    /// The momentum weight after the first step.
    let momentum: Float = 0.75
    /// The initial step size in units of the map.
    let initialStep: Float = 2

    /// The per-slot state of a run; `gather` follows a compaction of the working set.
    private struct State {
        var batch: AttackBatch
        var targets: [Int32]?
        var x, previous, gradient, best, bestGradient: Tensor
        var stepSizes: [Float]
        var bestLoss, lastLoss, bestLossAtCheck: [Float]
        var increases: [Int]
        var reducedAtCheck: [Bool]

        mutating func gather(_ order: [Int]) {
            batch = batch.subset(order)
            targets = targets?.gathered(order)
            x = x.gatherRows(order)
            previous = previous.gatherRows(order)
            gradient = gradient.gatherRows(order)
            best = best.gatherRows(order)
            bestGradient = bestGradient.gatherRows(order)
            stepSizes = stepSizes.gathered(order)
            bestLoss = bestLoss.gathered(order)
            lastLoss = lastLoss.gathered(order)
            bestLossAtCheck = bestLossAtCheck.gathered(order)
            increases = increases.gathered(order)
            reducedAtCheck = reducedAtCheck.gathered(order)
        }
    }

    /// Attacks caller rows `rows` of `batch` (with a targeted loss, `targets[row]` is the target
    /// of caller row `row`) with random starts keyed by (seed, random start, dataset index, step),
    /// and records into `outcome` the rows it fools and, for the others, their best points.
    func attack(_ model: ImageClassifier, _ batch: AttackBatch, rows: [Int], targets: [Int32]?, seed: UInt64,
                step: Int, outcome: inout Outcome) throws {
        var set = WorkingSet(rows: rows)
        let slotTargets = targets.map { byRow in set.rows.map { byRow[$0] } }
        let slotBatch = batch.subset(set.rows)
        let radius = slotBatch.budget.constantValue ?? 0
        let start = norm == .l2
            ? L2Ball.sphereStart(slotBatch.images, radius: radius, scale: 1, seed: seed, indices: slotBatch.indices,
                                 step: step, purpose: .randomStart)
            : APGDKernels.normalizedUniformStart(slotBatch.images, map: slotBatch.budget.values, scale: 1, seed: seed,
                                                 indices: slotBatch.indices, step: step, purpose: .randomStart)
        let first = try lossGradient(model, at: start, batch: slotBatch, targets: slotTargets)
        let n = set.count
        var s = State(batch: slotBatch, targets: slotTargets, x: start, previous: start, gradient: first.gradient,
                      best: start, bestGradient: first.gradient,
                      stepSizes: [Float](repeating: initialStep, count: n), bestLoss: first.values,
                      lastLoss: first.values, bestLossAtCheck: first.values, increases: [Int](repeating: 0, count: n),
                      reducedAtCheck: [Bool](repeating: true, count: n))
        retireFooled(first.logits, state: s, set: &set, outcome: &outcome)

        let checks = Set(APGD.checkpoints(iterations: iterations))
        var sinceCheck = 0
        for i in 0..<iterations {
            if set.liveCount == 0 { break }
            if let order = set.compaction() { s.gather(order) }
            if norm == .l2 {
                L2Ball.momentumStep(&s.x, previous: &s.previous, gradient: s.gradient, origin: s.batch.images,
                                    radius: radius, stepSizes: s.stepSizes, momentum: i == 0 ? 1 : momentum)
            } else {
                APGDKernels.momentumStep(&s.x, previous: &s.previous, gradient: s.gradient, origin: s.batch.images,
                                         map: s.batch.budget.values, stepSizes: s.stepSizes,
                                         momentum: i == 0 ? 1 : momentum)
            }
            let pass = try lossGradient(model, at: s.x, batch: s.batch, targets: s.targets)
            s.gradient = pass.gradient
            retireFooled(pass.logits, state: s, set: &set, outcome: &outcome)
            s.batch.progress?.steps(i + 1, of: iterations)

            var improved: [Int] = []
            for slot in set.liveSlots {
                let value = pass.values[slot]
                if value > s.lastLoss[slot] { s.increases[slot] += 1 }
                s.lastLoss[slot] = value
                if value > s.bestLoss[slot] {
                    s.bestLoss[slot] = value
                    improved.append(slot)
                }
            }
            s.best.copyRows(improved, from: s.x)
            s.bestGradient.copyRows(improved, from: s.gradient)

            sinceCheck += 1
            guard checks.contains(i + 1) else { continue }
            var restart: [Int] = []
            for slot in set.liveSlots {
                let oscillating = Float(s.increases[slot]) <= Float(sinceCheck) * rho
                let stalled = !s.reducedAtCheck[slot] && s.bestLossAtCheck[slot] >= s.bestLoss[slot]
                let reduce = oscillating || stalled
                s.reducedAtCheck[slot] = reduce
                s.bestLossAtCheck[slot] = s.bestLoss[slot]
                s.increases[slot] = 0
                if reduce {
                    s.stepSizes[slot] /= 2
                    restart.append(slot)
                }
            }
            s.x.copyRows(restart, from: s.best)
            s.gradient.copyRows(restart, from: s.bestGradient)
            sinceCheck = 0
        }
        outcome.offerBest(set.liveSlots, of: s.best, losses: s.bestLoss, in: set)
    }

    /// The loss at x and its gradient, averaged over `eot` passes (the values and logits are the
    /// last pass's, as in AutoAttack).
    private func lossGradient(_ model: ImageClassifier, at x: Tensor, batch: AttackBatch, targets: [Int32]?) throws
        -> LossGradient {
        var pass = try AttackPass.lossGradient(model, at: x, batch: batch, loss: loss, targets: targets)
        guard eot > 1 else { return pass }
        var sum = pass.gradient
        for _ in 1..<eot {
            pass = try AttackPass.lossGradient(model, at: x, batch: batch, loss: loss, targets: targets)
            sum.add(pass.gradient)
        }
        sum.scale(by: 1 / Float(eot))
        return LossGradient(logits: pass.logits, values: pass.values, gradient: sum)
    }

    /// Live slots whose logits are misclassified: their current point is their result.
    private func retireFooled(_ logits: Tensor, state s: State, set: inout WorkingSet, outcome: inout Outcome) {
        outcome.retireFooled(logits.argmaxRows(), labels: s.batch.labels, of: s.x, set: &set)
    }
}
