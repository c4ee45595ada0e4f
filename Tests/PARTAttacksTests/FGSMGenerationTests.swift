import PARTAttacks
import PARTEngine
import PARTNN
import PARTTraining
import XCTest

/// `--generation fgsm`: one signed-gradient step of alpha from a uniform start inside the map
/// (FGSM-RS), for every objective's generation loss.
final class FGSMGenerationTests: XCTestCase {
    var rng = RNG(seed: 23)

    func images(_ n: Int, side: Int = 16) -> Tensor {
        Tensor(shape: [n, side, side, 1], values: (0..<(n * side * side)).map { _ in rng.uniform() })
    }

    func generator(_ objective: ObjectiveKind, alpha: Float) throws -> Attack {
        try GenerationAttack.fgsm.attack(for: objective.make(beta: 6).generation, steps: 10, stepSize: alpha)
    }

    func batch(_ model: ImageClassifier, _ x: Tensor, _ map: EpsilonMap) throws -> AttackBatch {
        var b = AttackBatch(images: x, labels: (0..<x.shape[0]).map { Int32($0 % 10) }, indices: Array(0..<x.shape[0]),
                            budget: map)
        b.reference = try AttackPass.logits(model, x)
        return b
    }

    /// Inside the map and [0, 1] everywhere; entries whose budget is 0 keep their bits; most
    /// entries with a budget move (the start alone moves them).
    func testStaysInsideTheMapAndLeavesZeroBudgetEntries() throws {
        let model = try ModelZoo.make("small-cnn", numClasses: 10, inChannels: 1, imageSize: 16, rng: &rng)
        let x = images(6)
        let map = try EpsilonMap(Tensor(shape: x.shape, values: (0..<x.count).map { i in
            i % 3 == 0 ? 0 : (i % 3 == 1 ? 8 / 255 : 7 / 255)
        }))
        for objective in ObjectiveKind.allCases {
            let adv = try generator(objective, alpha: 10 / 255).perturb(model, try batch(model, x, map), seed: 4)
            var moved = 0
            for i in 0..<x.count {
                let d = abs(adv[flat: i] - x[flat: i])
                XCTAssertLessThanOrEqual(d, map.values[flat: i] * (1 + 1e-6) + 1e-7, "\(objective): entry \(i) leaves the map")
                XCTAssert(adv[flat: i] >= 0 && adv[flat: i] <= 1, "\(objective): entry \(i) leaves [0, 1]")
                if map.values[flat: i] == 0 {
                    XCTAssertEqual(adv[flat: i].bitPattern, x[flat: i].bitPattern, "\(objective): entry \(i) has no budget")
                } else if d > 0 {
                    moved += 1
                }
            }
            XCTAssertGreaterThan(moved, x.count / 2, "\(objective): most entries with a budget should move")
        }
    }

    /// One step: from the keyed uniform start, x + alpha sign(g) projected, which is PGD with
    /// one step; and the start does not depend on the batch (row 2 alone gives the same row).
    func testIsOneKeyedStepFromAUniformStart() throws {
        let model = try ModelZoo.make("small-cnn", numClasses: 10, inChannels: 1, imageSize: 16, rng: &rng)
        let x = images(4)
        let map = try EpsilonMap.constant(8 / 255, shape: x.shape)
        let fgsm = try generator(.at, alpha: 10 / 255)
        let adv = try fgsm.perturb(model, try batch(model, x, map), seed: 9)
        let pgd = try PGD(steps: 1, stepSize: 10 / 255).perturb(model, try batch(model, x, map), seed: 9)
        XCTAssertEqual(adv.scalars, pgd.scalars)
        let row = x.count / 4
        let alone = Tensor(shape: [1, 16, 16, 1], values: Array(x.scalars[(2 * row)..<(3 * row)]))
        var b = try batch(model, alone, try EpsilonMap.constant(8 / 255, shape: alone.shape))
        b.labels = [2]
        b.indices = [2]
        let single = try fgsm.perturb(model, b, seed: 9)
        for i in 0..<row {
            XCTAssertEqual(single[flat: i], adv[flat: 2 * row + i], accuracy: 1e-6, "row 2, entry \(i)")
        }
    }
}
