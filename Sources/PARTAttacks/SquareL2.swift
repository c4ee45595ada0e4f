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
        var set = WorkingSet(rows: rows)
        var slots = batch.subset(set.rows)
        let radius = slots.budget.constantValue ?? 0
        var streams = slots.indices.map { KeyedStream(seed: seed, purpose: .square, index: $0, step: restart) }
        var best = SquareL2Kernels.start(slots.images, radius: radius, streams: &streams)
        var (bestValue, predictions) = try margins(try AttackPass.logits(model, best), slots)
        func retireFooled() {
            let fooled = set.liveSlots.filter { predictions[$0] != slots.labels[$0] }
            outcome.recordAdversarial(fooled, of: best, in: set)
            for slot in fooled { set.retire(slot) }
        }
        retireFooled()

        let height = best.shape[1], width = best.shape[2], channels = best.shape[3]
        var patterns = [Int: [Float]]()
        for i in 0..<queries {
            if set.liveCount == 0 { break }
            if let order = set.compaction() {
                slots = slots.subset(order)
                streams = streams.gathered(order)
                best = best.gatherRows(order)
                bestValue = bestValue.gathered(order)
            }
            let side = SquareL2Kernels.side(iteration: i, pInit: pInit, height: height, width: width)
            if patterns[side] == nil { patterns[side] = SquareL2Kernels.pattern(side: side) }
            let n = set.count
            var tops = [Int](), lefts = [Int](), tops2 = [Int](), lefts2 = [Int](), signs = [Float](), flips = [Bool]()
            for slot in 0..<n {
                tops.append(Int(streams[slot].next() % UInt64(height - side + 1)))
                lefts.append(Int(streams[slot].next() % UInt64(width - side + 1)))
                tops2.append(Int(streams[slot].next() % UInt64(height - side + 1)))
                lefts2.append(Int(streams[slot].next() % UInt64(width - side + 1)))
                flips.append(streams[slot].next() >> 63 == 1)
                for _ in 0..<channels { signs.append(streams[slot].next() >> 63 == 0 ? -1 : 1) }
            }
            let candidate = SquareL2Kernels.propose(best: best, origin: slots.images, radius: radius, side: side,
                                                    pattern: patterns[side]!, tops: tops, lefts: lefts, tops2: tops2,
                                                    lefts2: lefts2, signs: signs, transposed: flips)
            let proposal = try margins(try AttackPass.logits(model, candidate), slots)
            predictions = proposal.predictions
            let accepted = (0..<n).filter { proposal.values[$0] > bestValue[$0] || predictions[$0] != slots.labels[$0] }
            best.copyRows(accepted, from: candidate)
            for slot in accepted { bestValue[slot] = proposal.values[slot] }
            retireFooled()
        }
        outcome.offerBest(set.liveSlots, of: best, losses: bestValue, in: set)
    }
}
