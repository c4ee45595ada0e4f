import PARTNN

/// An attack with something to tell the user about how it runs on a given model: a substituted
/// loss, fewer targets than asked (CONVENTIONS section 3).
///
/// The notes depend on the attack's settings and the model only, never on a batch, so a caller
/// (the evaluation's stage log) asks once before the first batch and prints each line once:
///
///     if let noted = attack as? AttackNotes { noted.notes(for: model).forEach(log) }
public protocol AttackNotes {
    /// One sentence per note; empty when the attack runs as configured.
    func notes(for model: ImageClassifier) -> [String]
}

/// How many targets a targeted attack uses: `asked`, at most classes - 1 (with 2 classes the one
/// other class is the only target).
func targetCount(asked: Int, classes: Int) -> Int {
    Swift.max(0, Swift.min(asked, classes - 1))
}

/// The note of a targeted attack that runs fewer targets than asked.
func targetNote(_ name: String, asked: Int, classes: Int) -> String? {
    let used = targetCount(asked: asked, classes: classes)
    guard used < asked else { return nil }
    return "\(name): the model has \(classes) classes, so \(used) target\(used == 1 ? "" : "s") instead of \(asked)"
}
