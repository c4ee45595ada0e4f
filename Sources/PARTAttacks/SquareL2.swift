import PARTEngine
import PARTNN

extension Square {
    /// One L2 run on caller rows `rows` (the batch's budget is the constant map of the radius):
    /// the start of `SquareL2Kernels.start`, then per iteration one proposal per row
    /// (`SquareL2Kernels.propose`) with windows of side `SquareL2Kernels.side`, kept when its
    /// margin is higher or it fools the model. Every draw comes from the row's stream keyed by
    /// (seed, square, dataset index, restart): per iteration the two window positions (uniform over
    /// all H - s + 1 by W - s + 1 positions), the pattern's transpose bit and C signs. The reference
    /// draws the positions and the transpose once per iteration for the whole batch. Queries are
    /// full forward passes: the rescaling onto the sphere changes every pixel.
    func attackL2(_ model: ImageClassifier, _ batch: AttackBatch, rows: [Int], seed: UInt64, restart: Int,
                  outcome: inout Outcome) throws {
        var r = SquareRows(batch, rows: rows, seed: seed, restart: restart)
        let radius = r.slots.budget.constantValue ?? 0
        r.best = SquareL2Kernels.start(r.slots.images, radius: radius, streams: &r.streams)
        var predictions: [Int32]
        (r.bestValue, predictions) = try margins(try AttackPass.logits(model, r.best), r.slots)
        outcome.retireFooled(predictions, labels: r.slots.labels, of: r.best, set: &r.set)

        let height = r.best.shape[1], width = r.best.shape[2], channels = r.best.shape[3]
        var patterns = [Int: [Float]]()
        for i in 0..<queries {
            if r.set.liveCount == 0 { break }
            defer { r.slots.progress?.steps(i + 1, of: queries) }
            r.compact()
            let side = SquareL2Kernels.side(iteration: i, pInit: pInit, height: height, width: width)
            if patterns[side] == nil { patterns[side] = SquareL2Kernels.pattern(side: side) }
            let n = r.set.count
            var tops = [Int](), lefts = [Int](), tops2 = [Int](), lefts2 = [Int](), signs = [Float](), flips = [Bool]()
            for slot in 0..<n {
                tops.append(Int(r.streams[slot].next() % UInt64(height - side + 1)))
                lefts.append(Int(r.streams[slot].next() % UInt64(width - side + 1)))
                tops2.append(Int(r.streams[slot].next() % UInt64(height - side + 1)))
                lefts2.append(Int(r.streams[slot].next() % UInt64(width - side + 1)))
                flips.append(r.streams[slot].next() >> 63 == 1)
                for _ in 0..<channels { signs.append(r.streams[slot].next() >> 63 == 0 ? -1 : 1) }
            }
            let candidate = SquareL2Kernels.propose(best: r.best, origin: r.slots.images, radius: radius, side: side,
                                                    pattern: patterns[side]!, tops: tops, lefts: lefts, tops2: tops2,
                                                    lefts2: lefts2, signs: signs, transposed: flips)
            let proposal = try margins(try AttackPass.logits(model, candidate), r.slots)
            predictions = proposal.predictions
            let accepted = (0..<n).filter { proposal.values[$0] > r.bestValue[$0] || predictions[$0] != r.slots.labels[$0] }
            r.best.copyRows(accepted, from: candidate)
            for slot in accepted { r.bestValue[slot] = proposal.values[slot] }
            outcome.retireFooled(predictions, labels: r.slots.labels, of: r.best, set: &r.set)
        }
        outcome.offerBest(r.set.liveSlots, of: r.best, losses: r.bestValue, in: r.set)
    }
}
