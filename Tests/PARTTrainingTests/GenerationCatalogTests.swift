import Foundation
import PARTAttacks
import XCTest
@testable import PARTTraining

/// Training names its generation attack through the attack catalog: the entries that can make
/// training examples, what each builds from a recipe, and config.json's "generation" field.
final class GenerationCatalogTests: XCTestCase {
    func testTheTrainableEntriesAreTheCatalogs() throws {
        let names = AttackCatalog.standard.trainable.map(\.name)
        XCTAssertEqual(Set(names), ["pgd", "mma", "fgsm"])
        XCTAssertEqual(GenerationAttack.available.map(\.rawValue), names)
        for used in [GenerationAttack.pgd, .fgsm] { XCTAssert(names.contains(used.rawValue), "\(used)") }
        XCTAssertEqual(GenerationAttack.available.map(\.singleStep), names.map { $0 == "fgsm" })
        XCTAssertNil(GenerationAttack(rawValue: "apgd-t"))
        XCTAssertThrowsError(try GenerationAttack("square")) {
            XCTAssertEqual("\($0)", "'square' cannot make training examples (attacks that can: \(names.joined(separator: ", ")))")
        }
        XCTAssert(AttackCatalog.standard.trainingSummaries.hasSuffix(", or MMA"), AttackCatalog.standard.trainingSummaries)
    }

    /// Each entry builds the attack training ran before the catalog named it: PGD from the
    /// objective's start on its loss, FGSM-RS as one PGD step from a uniform start, MMA with k = 3.
    func testEachEntryBuildsTheRecipesAttack() throws {
        let at = ObjectiveKind.at.make(beta: 6).generation, trades = ObjectiveKind.trades.make(beta: 6).generation
        let pgd = try XCTUnwrap(try GenerationAttack.pgd.attack(for: trades, steps: 7, stepSize: 0.01) as? PGD)
        XCTAssertEqual(pgd.steps, 7)
        XCTAssertEqual(pgd.stepSize, 0.01)
        guard case .gaussian = pgd.start else { return XCTFail("TRADES starts from Gaussian noise: \(pgd.start)") }
        XCTAssert(pgd.loss is KLDivergenceLoss)
        XCTAssertEqual(try XCTUnwrap(try GenerationAttack.pgd.attack(for: at, steps: 3, stepSize: 0.02) as? PGD).start, .uniform)
        let fgsm = try XCTUnwrap(try GenerationAttack.fgsm.attack(for: trades, steps: 10, stepSize: 0.05) as? PGD)
        XCTAssertEqual(fgsm.steps, 1)
        XCTAssertEqual(fgsm.start, .uniform)
        XCTAssert(fgsm.loss is KLDivergenceLoss)
        let mma = try XCTUnwrap(try GenerationAttack("mma").attack(for: at, steps: 4, stepSize: 0.01) as? MMA)
        XCTAssertEqual(mma.k, 3)
        XCTAssertEqual(mma.name, "mma-4")
    }

    /// config.json writes the entry's name and reads the names older runs wrote; a name the
    /// catalog cannot train with is refused.
    func testConfigFilesKeepTheirNames() throws {
        var config = TrainingConfig()
        config.generation = .fgsm
        let data = try JSONEncoder().encode(config)
        var object = try XCTUnwrap(try JSONSerialization.jsonObject(with: data) as? [String: Any])
        XCTAssertEqual(object["generation"] as? String, "fgsm")
        for name in ["pgd", "mma", "fgsm"] {
            object["generation"] = name
            let read = try TrainingConfig.decodeFillingDefaults(try JSONSerialization.data(withJSONObject: object))
            XCTAssertEqual(read.generation.rawValue, name)
        }
        object["generation"] = "cw"
        XCTAssertThrowsError(try TrainingConfig.decodeFillingDefaults(try JSONSerialization.data(withJSONObject: object)))
    }
}
