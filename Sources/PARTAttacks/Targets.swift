import PARTEngine
import PARTNN

/// How many targets a targeted attack uses: `asked`, at most classes - 1 (with 2 classes the one
/// other class is the only target; CONVENTIONS section 3).
func targetCount(asked: Int, classes: Int) -> Int {
    Swift.max(0, Swift.min(asked, classes - 1))
}

/// The note of a targeted attack that runs fewer targets than asked (`ClassCountNotes`).
func targetNote(asked: Int, classes: Int) -> String? {
    let used = targetCount(asked: asked, classes: classes)
    guard used < asked else { return nil }
    return "the model has \(classes) classes, so \(used) target\(used == 1 ? "" : "s") instead of \(asked)"
}

/// For each row of clean logits, the target of each rank: the `count` classes other than the
/// label by decreasing logit (never the label), as AutoAttack's targeted attacks take them.
func rankedTargets(cleanLogits: Tensor, labels: [Int32], count: Int) -> [[Int32]] {
    TargetMargins.topOthers(logits: cleanLogits, labels: labels, count: count)
}
