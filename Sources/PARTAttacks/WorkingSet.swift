import PARTEngine
import PARTNN

/// The rows an iterative attack still works on, held in a working batch ("slots") whose size is
/// always one of a few bucket sizes.
///
/// Attacks drop a row as soon as it is fooled, so the work shrinks with the robust rows. The
/// working batch is compacted only to bucket sizes (every size up to 8, then 4, 5, 6 or 7 times a
/// power of two) because the engine builds its oneDNN primitives, and a reordered copy of the
/// weights, once per batch size: a batch shrinking one row at a time would build one set per
/// size. A bucket wastes at most a fifth of a pass on padding. Padding slots repeat a live row and
/// are never live; their results are ignored, and since every row's computation is independent
/// of the others, they change nothing.
struct WorkingSet {
    /// The caller's row held by each slot.
    private(set) var rows: [Int]
    /// Whether each slot still needs work.
    private(set) var live: [Bool]
    private(set) var liveCount: Int

    /// Slots for `rows` (positions in the caller's batch), padded to a bucket size.
    init(rows: [Int]) {
        precondition(!rows.isEmpty, "a working set needs rows")
        let size = WorkingSet.bucket(rows.count)
        self.rows = rows + [Int](repeating: rows[0], count: size - rows.count)
        live = [Bool](repeating: true, count: rows.count) + [Bool](repeating: false, count: size - rows.count)
        liveCount = rows.count
    }

    var count: Int { rows.count }

    /// The live slots, in slot order.
    var liveSlots: [Int] { live.indices.filter { live[$0] } }

    /// The smallest bucket size that holds `n` rows.
    static func bucket(_ n: Int) -> Int {
        guard n > 8 else { return Swift.max(n, 1) }
        var unit = 1
        while 8 * unit < n { unit *= 2 }
        return (n + unit - 1) / unit * unit
    }

    /// Marks a slot done.
    mutating func retire(_ slot: Int) {
        guard live[slot] else { return }
        live[slot] = false
        liveCount -= 1
    }

    /// When the live slots fit a smaller bucket: the old slot each new slot comes from (live
    /// slots first, in order, then padding), to gather every per-slot tensor and array with;
    /// nil when the working batch keeps its size.
    mutating func compaction() -> [Int]? {
        guard liveCount > 0 else { return nil }
        let size = WorkingSet.bucket(liveCount)
        guard size < rows.count else { return nil }
        let kept = liveSlots
        let order = kept + [Int](repeating: kept[0], count: size - kept.count)
        rows = order.map { rows[$0] }
        live = [Bool](repeating: true, count: kept.count) + [Bool](repeating: false, count: size - kept.count)
        return order
    }
}

extension Array {
    /// Elements at `order` (a compaction's gather list).
    func gathered(_ order: [Int]) -> [Element] { order.map { self[$0] } }
}

/// What an attack returns per row of the caller's batch: the clean image until something better
/// is found, an adversarial example once one is (and then nothing replaces it), otherwise the
/// point of highest loss offered so far.
struct Outcome {
    private(set) var images: Tensor
    private(set) var fooled: [Bool]
    private var bestLoss: [Float]

    init(_ batch: AttackBatch) {
        images = batch.images
        fooled = [Bool](repeating: false, count: batch.count)
        bestLoss = [Float](repeating: -.infinity, count: batch.count)
    }

    /// Marks caller rows fooled without changing their image (a clean image already misclassified).
    mutating func markFooled(_ rows: [Int]) {
        for r in rows { fooled[r] = true }
    }

    /// Rows `slots` of `source` (a working batch held by `set`) fool the model: they become the
    /// result of their caller rows.
    mutating func recordAdversarial(_ slots: [Int], of source: Tensor, in set: WorkingSet) {
        guard !slots.isEmpty else { return }
        recordAdversarial(slots, rows: source.gatherRows(slots), in: set)
    }

    /// Live slots of `set` whose prediction is not their label fool the model: their rows of
    /// `source` become their caller rows' results and they leave the working set.
    mutating func retireFooled(_ predictions: [Int32], labels: [Int32], of source: Tensor, set: inout WorkingSet) {
        let fooled = set.liveSlots.filter { predictions[$0] != labels[$0] }
        recordAdversarial(fooled, of: source, in: set)
        for slot in fooled { set.retire(slot) }
    }

    /// The same with the slots' rows already gathered: `adversarial` row j belongs to `slots[j]`.
    mutating func recordAdversarial(_ slots: [Int], rows adversarial: Tensor, in set: WorkingSet) {
        let rows = slots.map { set.rows[$0] }
        images.scatterRows(adversarial, to: rows)
        for r in rows { fooled[r] = true }
    }

    /// Offers rows `slots` of `source` with their losses: each becomes its caller row's result when
    /// that row is not fooled and the loss beats the best offered so far.
    mutating func offerBest(_ slots: [Int], of source: Tensor, losses: [Float], in set: WorkingSet) {
        let better = slots.filter { s in
            let r = set.rows[s]
            return !fooled[r] && (losses[s] > bestLoss[r] || bestLoss[r] == -.infinity)
        }
        guard !better.isEmpty else { return }
        let rows = better.map { set.rows[$0] }
        images.scatterRows(source.gatherRows(better), to: rows)
        for s in better { bestLoss[set.rows[s]] = losses[s] }
    }

    /// Caller rows among `rows` not fooled yet.
    func unfooled(_ rows: [Int]) -> [Int] { rows.filter { !fooled[$0] } }
}

/// The rows of `batch` an attack can work on: a budget somewhere (a row whose map is all zero
/// can only return its input) and correctly classified when clean (a misclassified row is
/// already adversarial and keeps its clean image, as in AutoAttack). Also returns the clean logits
/// of those rows, [rows.count, K], in the same order.
func rowsToAttack(_ model: ImageClassifier, _ batch: AttackBatch, attack: String, outcome: inout Outcome) throws
    -> (rows: [Int], logits: Tensor?) {
    try requireSetting(model.numClasses >= 2, attack, "needs a model with at least 2 classes, this one has \(model.numClasses)")
    let budgets = batch.budget.values.rowMaxAbs()
    let candidates = (0..<batch.count).filter { budgets[$0] > 0 }
    guard !candidates.isEmpty else { return ([], nil) }
    let set = WorkingSet(rows: candidates)
    let all = try AttackPass.logits(model, batch.images.gatherRows(set.rows))
    let logits = all.slice(0..<candidates.count)
    let predictions = logits.argmaxRows()
    var keep: [Int] = [], positions: [Int] = [], wrong: [Int] = []
    for (j, row) in candidates.enumerated() {
        if predictions[j] == batch.labels[row] {
            keep.append(row)
            positions.append(j)
        } else {
            wrong.append(row)
        }
    }
    outcome.markFooled(wrong)
    return (keep, keep.isEmpty ? nil : logits.gatherRows(positions))
}

/// Checks of an attack's settings that a user can reach through its parameters.
func requireSetting(_ condition: Bool, _ attack: String, _ message: String) throws {
    if !condition { throw AttackError("\(attack): \(message)") }
}
