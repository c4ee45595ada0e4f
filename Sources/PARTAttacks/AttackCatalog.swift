import Foundation
import PARTEngine
import PARTNN

/// The attacks an evaluation can name, and the parser of attack lists.
///
/// A list is comma-separated items `name[:key=value]...`, for example
/// `natural,pgd20,pgd:steps=50:alpha=0.01,cw20,mma,fgsm,pgd-l2:eps=0.5,aa`. Numbers accept
/// decimals and fractions (`alpha=2/255`). `pgdN`, `cwN` and `mmaN` are short for
/// `pgd:steps=N` and so on. A composite name (`aa`, `aa-fast`, AutoAttack's other versions
/// `aa-l2`, `aa-plus`, `aa-l2-plus`, `aa-rand`) expands to its stages; a key given to it
/// (`aa:steps=20:queries=1000`, `aa-l2:eps=0.5`) goes to each of its attacks that takes it.
/// Unknown names and keys are one-line errors listing what is known.
///
/// Adding an attack is one `Entry` in `standard`: its name, keys, a cheap setting for tests,
/// and a closure that reads its parameters and builds it.
public struct AttackCatalog: Sendable {
    /// Values an item falls back on: the evaluation's budget and step size.
    public struct Defaults: Sendable {
        public var epsilon: Float
        public var alpha: Float
        public init(epsilon: Float, alpha: Float) {
            self.epsilon = epsilon
            self.alpha = alpha
        }
    }

    /// A named attack with its keys.
    public struct Entry: Sendable {
        public let name: String
        public let summary: String
        public let keys: [String]
        /// Parameters that make the attack cheap (tests, smoke runs), e.g. "steps=2".
        public let quick: String
        /// Builds the attack from the item's parameters; returns it with its nominal cost in
        /// model passes per point (a forward and an input backward count as 3), which weighs
        /// progress and ETA.
        public let build: @Sendable (inout Parameters, Defaults) throws -> (attack: Attack, cost: Double)
        /// How it makes training examples, when it can (`part train --generation`).
        public let training: Training?

        public init(_ name: String, _ summary: String, keys: [String], quick: String, training: Training? = nil,
                    build: @escaping @Sendable (inout Parameters, Defaults) throws -> (attack: Attack, cost: Double)) {
            self.name = name
            self.summary = summary
            self.keys = keys
            self.quick = quick
            self.training = training
            self.build = build
        }
    }

    /// One stage of an evaluation (the clean pass is a `NaturalPass`).
    public struct Stage {
        /// Unique within a list: the item as written ("pgd20", "pgd:steps=50") or a composite's
        /// component ("apgd-ce"); a repeated item gets "#2", "#3".
        public let name: String
        /// Every parameter resolved, e.g. "pgd:steps=20:alpha=0.025:random=true": what a
        /// results file's header records, and the key of the stage's random streams.
        public let description: String
        public let attack: Attack
        public let cost: Double
        public var isNatural: Bool { attack is NaturalPass }

        /// What the attack substitutes on `model` (fewer targets, another loss: docs/conventions.md#3-epsilon-maps-in-attacks
        ///), for the log.
        public func notes(for model: ImageClassifier) -> [String] {
            (attack as? ClassCountNotes)?.notes(for: model).map { "\(name): \($0)" } ?? []
        }

        public init(name: String, description: String, attack: Attack, cost: Double) {
            self.name = name
            self.description = description
            self.attack = attack
            self.cost = cost
        }
    }

    /// The values of one item, read with defaults; every read records the resolved value in
    /// `description`.
    public struct Parameters {
        public let attack: String
        var given: [String: String]
        var resolved: [(String, String)] = []

        init(attack: String, given: [String: String]) {
            self.attack = attack
            self.given = given
        }

        public mutating func int(_ key: String, _ fallback: Int, min: Int = 0) throws -> Int {
            var value = fallback
            if let text = given[key] {
                guard let v = Int(text), v >= min else {
                    throw AttackError("\(attack): \(key) must be an integer >= \(min), got '\(text)'")
                }
                value = v
            }
            resolved.append((key, String(value)))
            return value
        }

        public mutating func float(_ key: String, _ fallback: Float, min: Float = 0) throws -> Float {
            var value = fallback
            if let text = given[key] {
                guard let v = AttackCatalog.number(text), v >= min else {
                    throw AttackError("\(attack): \(key) must be a number >= \(min) (a decimal or a fraction such as 2/255), got '\(text)'")
                }
                value = v
            }
            resolved.append((key, String(value)))
            return value
        }

        /// A number in [0, 1] (in (0, 1] when `positive`).
        public mutating func fraction(_ key: String, _ fallback: Float, positive: Bool = false) throws -> Float {
            let value = try float(key, fallback)
            guard value <= 1, !positive || value > 0 else {
                throw AttackError("\(attack): \(key) must lie in \(positive ? "(0, 1]" : "[0, 1]"), got '\(given[key] ?? "")'")
            }
            return value
        }

        public mutating func bool(_ key: String, _ fallback: Bool) throws -> Bool {
            var value = fallback
            if let text = given[key] {
                switch text.lowercased() {
                case "true", "1", "yes", "on": value = true
                case "false", "0", "no", "off": value = false
                default: throw AttackError("\(attack): \(key) must be true or false, got '\(text)'")
                }
            }
            resolved.append((key, String(value)))
            return value
        }

        /// The norm (`norm`, linf unless given) and, for L2, the radius the item gives (`eps`; nil:
        /// --eps). Both are recorded only when given, so an L-inf item keeps its description (and
        /// so its random streams and its results file) from before the norm option.
        public mutating func threat() throws -> (norm: Norm, radius: Float?) {
            var norm = Norm.linf
            if let text = given["norm"] {
                guard let n = Norm(rawValue: text.lowercased()) else {
                    throw AttackError("\(attack): norm must be linf or l2, got '\(text)'")
                }
                norm = n
                resolved.append(("norm", n.rawValue))
            }
            guard given["eps"] != nil else { return (norm, nil) }
            guard norm == .l2 else {
                throw AttackError("\(attack): eps is the L2 radius and needs norm=l2 (an L-inf attack's budget is --eps)")
            }
            return (norm, try float("eps", 0))
        }

        /// An integer key recorded only when given (a setting added after the item's description
        /// was fixed).
        public mutating func optionalInt(_ key: String, _ fallback: Int, min: Int) throws -> Int {
            given[key] == nil ? fallback : try int(key, fallback, min: min)
        }

        var description: String { ([attack] + resolved.map { "\($0.0)=\($0.1)" }).joined(separator: ":") }
    }

    public var entries: [Entry]
    /// Composite names and the items they expand to.
    public var composites: [(name: String, summary: String, items: [String])]

    public init(entries: [Entry], composites: [(name: String, summary: String, items: [String])]) {
        self.entries = entries
        self.composites = composites
    }

    /// Names that take a step count as a suffix (`pgd20` = `pgd:steps=20`).
    static let stepSuffixed: Set<String> = ["pgd", "cw", "mma"]

    /// The catalog of `part eval`.
    public static let standard = AttackCatalog(entries: [
        Entry("natural", "clean accuracy (always evaluated first)", keys: [], quick: "") { _, _ in
            (NaturalPass(), 1)
        },
        Entry("fgsm", "one signed step of the full budget (CE loss)", keys: [], quick: "",
              // FGSM-RS (Wong, Rice and Kolter 2020): fast adversarial training.
              training: Training("FGSM (one step of --alpha from a random start; --alpha defaults to 1.25 eps)",
                                 singleStep: true) { r in
                  PGD(steps: 1, stepSize: r.stepSize, start: .uniform, loss: r.loss)
              }) { _, _ in
            (FGSM(), 4)
        },
        Entry("pgd", "L-inf PGD on CE, random start (pgdN: N steps)", keys: ["steps", "alpha", "random"],
              quick: "steps=2", training: Training("PGD (--steps of --alpha)") { r in
                  PGD(steps: r.steps, stepSize: r.stepSize, start: r.start, loss: r.loss)
              }) { p, d in
            let steps = try p.int("steps", 20)
            let attack = PGD(steps: steps, stepSize: try p.float("alpha", d.alpha), randomStart: try p.bool("random", true))
            return (attack, Double(3 * steps + 1))
        },
        Entry("cw", "L-inf PGD on the CW margin max_{j!=y} z_j - z_y, random start (cwN: N steps)",
              keys: ["steps", "alpha", "random"], quick: "steps=2") { p, d in
            let steps = try p.int("steps", 20)
            let attack = PGD(steps: steps, stepSize: try p.float("alpha", d.alpha), randomStart: try p.bool("random", true),
                             loss: CWMarginLoss())
            return (attack, Double(3 * steps + 1))
        },
        Entry("mma", "MMA of the PART code: PGD on a hinge towards each of the k best wrong classes (mmaN: N steps)",
              keys: ["steps", "alpha", "k", "random"], quick: "steps=2",
              // On its own margin loss whatever the objective's.
              training: Training("MMA") { r in try MMA(steps: r.steps, stepSize: r.stepSize, k: 3) }) { p, d in
            let steps = try p.int("steps", 20)
            let attack = try MMA(steps: steps, stepSize: try p.float("alpha", d.alpha), k: try p.int("k", 3, min: 1),
                                 randomStart: try p.bool("random", true))
            return (attack, Double(attack.k * (3 * steps + 1) + 1))
        },
        Entry("pgd-l2", "L2 PGD, random start; eps is the L2 radius (default: the constant map's value, --eps); "
              + "constant maps only", keys: ["eps", "steps", "alpha", "random"], quick: "steps=2") { p, d in
            let radius: Float? = p.given["eps"] == nil ? nil : try p.float("eps", d.epsilon)
            let steps = try p.int("steps", 20)
            // Madry et al.'s rule of thumb for the step: 2.5 * radius / steps.
            let r = radius ?? d.epsilon
            let alpha = try p.float("alpha", steps > 0 ? 2.5 * r / Float(steps) : r)
            let attack = try PGDL2(steps: steps, stepSize: alpha, radius: radius, randomStart: try p.bool("random", true))
            return (attack, Double(3 * steps + 1))
        },
        // AutoAttack's components (Croce & Hein, ICML 2020); the defaults are its "standard" version.
        // `norm=l2` runs one in the L2 ball of radius `eps` (default --eps).
        Entry("apgd-ce", "Auto-PGD on CE: adaptive step size, momentum, random start (AutoAttack: 100 steps, 1 restart)",
              keys: ["steps", "restarts", "rho", "norm", "eps", "eot"], quick: "steps=3") { p, _ in
            try AttackCatalog.apgd(.ce, &p)
        },
        Entry("apgd-dlr", "Auto-PGD on the Difference of Logits Ratio (CE below 3 classes)",
              keys: ["steps", "restarts", "rho", "norm", "eps", "eot"], quick: "steps=3") { p, _ in
            try AttackCatalog.apgd(.dlr, &p)
        },
        Entry("apgd-t", "targeted Auto-PGD on targeted DLR towards each of the best `targets` wrong classes "
              + "(AutoAttack: 9 targets, 100 steps)", keys: ["steps", "targets", "restarts", "norm", "eps"],
              quick: "steps=3,targets=2") { p, _ in
            let targets = try p.int("targets", 9, min: 1), steps = try p.int("steps", 100)
            let restarts = try p.int("restarts", 1, min: 1)
            let (norm, radius) = try p.threat()
            let attack = APGDTargeted(targets: targets, iterations: steps, restarts: restarts, norm: norm, radius: radius)
            return (attack, Double(attack.targets * attack.restarts * (3 * attack.iterations + 3) + 1))
        },
        Entry("fab-t", "targeted FAB towards each of the best `targets` wrong classes (AutoAttack: 9 targets, 100 steps)",
              keys: ["steps", "targets", "restarts", "norm", "eps"], quick: "steps=3,targets=2") { p, _ in
            let targets = try p.int("targets", 9, min: 1), steps = try p.int("steps", 100)
            let restarts = try p.int("restarts", 1, min: 1)
            let (norm, radius) = try p.threat()
            let attack = FABTargeted(targets: targets, iterations: steps, restarts: restarts, norm: norm, radius: radius)
            return (attack, Double(attack.targets * attack.restarts * 4 * attack.iterations + 1))
        },
        Entry("fab", "untargeted FAB: the nearest linearised boundary of all classes, one gradient per class "
              + "(AutoAttack plus: 5 restarts, 100 steps)", keys: ["steps", "restarts", "norm", "eps"], quick: "steps=2") { p, _ in
            let steps = try p.int("steps", 100), restarts = try p.int("restarts", 5, min: 1)
            let (norm, radius) = try p.threat()
            let attack = FABUntargeted(iterations: steps, restarts: restarts, norm: norm, radius: radius)
            // Nominally 10 classes: 9 gradients and a forward pass per step.
            return (attack, Double(attack.restarts * (9 * 3 + 1) * attack.iterations + 1))
        },
        Entry("square", "Square attack, forward passes only (AutoAttack: 5000 queries, p=0.8)",
              keys: ["queries", "p", "restarts", "norm", "eps"], quick: "queries=20") { p, _ in
            let queries = try p.int("queries", 5000), pInit = try p.fraction("p", 0.8, positive: true)
            let restarts = try p.int("restarts", 1, min: 1)
            let (norm, radius) = try p.threat()
            let attack = Square(queries: queries, pInit: pInit, restarts: restarts, norm: norm, radius: radius)
            return (attack, Double(attack.restarts * attack.queries + 1))
        },
    ], composites: [
        // AutoAttack's versions as its autoattack.py sets them (set_version).
        ("aa", "AutoAttack standard: APGD-CE, APGD-T, FAB-T, Square", ["apgd-ce", "apgd-t", "fab-t", "square"]),
        ("aa-fast", "APGD-CE and APGD-T", ["apgd-ce", "apgd-t"]),
        ("aa-l2", "AutoAttack standard, L2 (radius eps, default --eps): APGD-CE, APGD-T, FAB-T, Square",
         ["apgd-ce:norm=l2", "apgd-t:norm=l2", "fab-t:norm=l2", "square:norm=l2"]),
        ("aa-plus", "AutoAttack plus: APGD-CE and APGD-DLR with 5 restarts, FAB with 5 restarts, Square, APGD-T, FAB-T",
         ["apgd-ce:restarts=5", "apgd-dlr:restarts=5", "fab:restarts=5", "square", "apgd-t", "fab-t"]),
        ("aa-l2-plus", "AutoAttack plus, L2",
         ["apgd-ce:norm=l2:restarts=5", "apgd-dlr:norm=l2:restarts=5", "fab:norm=l2:restarts=5", "square:norm=l2",
          "apgd-t:norm=l2", "fab-t:norm=l2"]),
        ("aa-rand", "AutoAttack rand (models with randomness): APGD-CE and APGD-DLR, gradients averaged over 20 passes",
         ["apgd-ce:eot=20", "apgd-dlr:eot=20"]),
    ])

    /// APGD-CE or APGD-DLR from an item's parameters, with its nominal cost.
    static func apgd(_ loss: APGD.Loss, _ p: inout Parameters) throws -> (attack: Attack, cost: Double) {
        let steps = try p.int("steps", 100), restarts = try p.int("restarts", 1, min: 1), rho = try p.fraction("rho", 0.75)
        let (norm, radius) = try p.threat()
        let eot = try p.optionalInt("eot", 1, min: 1)
        let attack = APGD(loss: loss, iterations: steps, restarts: restarts, rho: rho, norm: norm, radius: radius, eot: eot)
        return (attack, Double(attack.restarts * attack.eot * (3 * attack.iterations + 3) + 1))
    }

    /// A decimal ("0.1", "1e-3") or a fraction ("8/255") as a Float; nil if it is neither or not finite.
    public static func number(_ text: String) -> Float? {
        let parts = text.trimmingCharacters(in: .whitespaces).split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count == 1 || parts.count == 2, let a = Double(parts[0]) else { return nil }
        var value = a
        if parts.count == 2 {
            guard let b = Double(parts[1]), b != 0 else { return nil }
            value = a / b
        }
        let f = Float(value)
        return f.isFinite ? f : nil
    }

    /// Every name a list may use, for error messages and help.
    public var knownNames: [String] {
        entries.map { Self.stepSuffixed.contains($0.name) ? "\($0.name), \($0.name)N" : $0.name }
            + composites.map(\.name)
    }

    /// The stages of `list`, `natural` first (added when the list does not name it).
    public func stages(_ list: String, defaults: Defaults) throws -> [Stage] {
        let items = list.split(separator: ",", omittingEmptySubsequences: false).map {
            $0.trimmingCharacters(in: .whitespaces)
        }
        guard !items.isEmpty, !items.contains(where: \.isEmpty) else {
            throw AttackError("the attack list '\(list)' has an empty item: use comma-separated names such as natural,pgd20,aa")
        }
        var stages = [Stage]()
        for item in items {
            let fields = item.split(separator: ":", omittingEmptySubsequences: false).map(String.init)
            let name = fields[0].lowercased()
            if let composite = composites.first(where: { $0.name == name }) {
                stages += try expand(composite, userFields: Array(fields.dropFirst()), defaults)
            } else {
                stages.append(try stage(name, fields, display: item, defaults))
            }
        }
        // natural first, once.
        let naturals = stages.filter(\.isNatural)
        var ordered = [naturals.first ?? Stage(name: "natural", description: "natural", attack: NaturalPass(), cost: 1)]
        ordered += stages.filter { !$0.isNatural }
        // Unique names: a repeated item gets "#2", "#3", and its own random streams.
        var seen = [String: Int]()
        return ordered.map { s in
            let n = (seen[s.name] ?? 0) + 1
            seen[s.name] = n
            return n == 1 ? s : Stage(name: "\(s.name)#\(n)", description: "\(s.description)#\(n)", attack: s.attack, cost: s.cost)
        }
    }

    /// The stages of a composite: its items (`name[:key=value]...`, the version's settings), each
    /// with the keys the user gave the composite that its attack takes (`aa-l2:eps=0.5`; a user's
    /// key replaces the item's own). A stage is named after its attack, with "-l2" in the L2 ball.
    func expand(_ composite: (name: String, summary: String, items: [String]), userFields: [String],
                _ defaults: Defaults) throws -> [Stage] {
        func key(_ field: String) -> String { field.split(separator: "=", maxSplits: 1).first.map { $0.lowercased() } ?? "" }
        let parsed = composite.items.map { $0.split(separator: ":").map(String.init) }
        let missing = parsed.map { $0[0] }.filter { c in !entries.contains { $0.name == c } }
        guard missing.isEmpty else {
            throw AttackError("\(composite.name) needs \(parsed.map { $0[0] }.joined(separator: ", ")), and this build lacks "
                              + "\(missing.joined(separator: ", ")) (known: \(knownNames.joined(separator: ", ")))")
        }
        let components = parsed.map { item in (entry: entries.first { $0.name == item[0] }!, preset: Array(item.dropFirst())) }
        let keys = Set(components.flatMap(\.entry.keys))
        for field in userFields where !keys.contains(key(field)) {
            throw AttackError("unknown key '\(key(field))' for \(composite.name) (its attacks take: \(keys.sorted().joined(separator: ", ")))")
        }
        return try components.map { component in
            let own = userFields.filter { component.entry.keys.contains(key($0)) }
            let fields = component.preset.filter { p in !own.contains { key($0) == key(p) } } + own
            let l2 = fields.contains { key($0) == "norm" && $0.lowercased().hasSuffix("=l2") }
            let display = component.entry.name + (l2 ? "-l2" : "")
            do {
                return try stage(component.entry.name, [component.entry.name] + fields, display: display, defaults)
            } catch let error as AttackError {
                // The user wrote the composite's name; the component says which of its attacks refused the value.
                throw AttackError("\(composite.name): \(error.description)")
            }
        }
    }

    /// One item: `fields` = [name, "key=value", ...].
    func stage(_ rawName: String, _ fields: [String], display: String, _ defaults: Defaults) throws -> Stage {
        var name = rawName
        var given = [String: String]()
        for field in fields.dropFirst() {
            let kv = field.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false).map(String.init)
            guard kv.count == 2, !kv[0].isEmpty, !kv[1].isEmpty else {
                throw AttackError("'\(field)' in '\(display)' is not key=value")
            }
            guard given[kv[0].lowercased()] == nil else { throw AttackError("\(kv[0]) is given twice in '\(display)'") }
            given[kv[0].lowercased()] = kv[1]
        }
        // pgd20 = pgd:steps=20
        if entries.first(where: { $0.name == name }) == nil,
           let base = Self.stepSuffixed.first(where: { name.hasPrefix($0) && Int(name.dropFirst($0.count)) != nil }) {
            guard given["steps"] == nil else { throw AttackError("'\(display)' gives the steps twice") }
            given["steps"] = String(name.dropFirst(base.count))
            name = base
        }
        guard let entry = entries.first(where: { $0.name == name }) else {
            throw AttackError("unknown attack '\(rawName)' (known: \(knownNames.joined(separator: ", ")))")
        }
        if let unknown = given.keys.sorted().first(where: { !entry.keys.contains($0) }) {
            let known = entry.keys.isEmpty ? "it takes none" : "known: \(entry.keys.joined(separator: ", "))"
            throw AttackError("unknown key '\(unknown)' for \(entry.name) (\(known))")
        }
        var parameters = Parameters(attack: entry.name, given: given)
        let (attack, cost) = try entry.build(&parameters, defaults)
        return Stage(name: display, description: parameters.description, attack: attack, cost: cost)
    }
}

/// An attack whose behaviour changes with the number of classes (fewer targets, a substituted
/// loss) says so here, and evaluation logs it.
public protocol ClassCountNotes {
    /// One sentence per note; empty when the attack runs as configured.
    func notes(for model: ImageClassifier) -> [String]
}

extension MMA: ClassCountNotes {
    public func notes(for model: ImageClassifier) -> [String] {
        let classes = model.numClasses
        return classes - 1 < k ? ["the model has \(classes) classes, so \(classes - 1) target(s) instead of k = \(k)"] : []
    }
}

/// The clean pass of an evaluation: returns the images unchanged. It stands for `natural` in a
/// list; evaluation runs it as the initial accuracy, not as an attack.
public struct NaturalPass: Attack {
    public init() {}
    public var name: String { "natural" }
    public func perturb(_ model: ImageClassifier, _ batch: AttackBatch, seed: UInt64) throws -> Tensor { batch.images }
}
