import PARTCAM

/// A named recipe: dataset x model x method, every field of which a flag can override.
public struct Preset: Sendable {
    public let name: String
    /// One line on where the setting comes from.
    public let summary: String
    public let config: TrainingConfig
}

/// The paper's settings (docs/method.md#2-the-training-loop-and-its-defaults, #7-datasets-and-per-dataset-defaults) for the six methods of the family.
///
/// CIFAR-10 with ResNet-18 and WRN-34-10, SVHN and TinyImageNet-200 with ResNet-18 follow the
/// official code: 80 epochs (20 of burn-in), SGD lr 0.01, momentum 0.9, weight decay 2e-4,
/// batch 128, eps 8/255, eps-low 7/255, alpha 2/255, 10 steps, beta 6, and the official schedule
/// (x0.1 after epoch 79); SVHN uses alpha 1/255 and weight decay 3.5e-3. The official code has no
/// TinyImageNet recipe, so its preset keeps the CIFAR-10 settings. Fashion-MNIST with SmallCNN is
/// the project's quick recipe (5 epochs, 2 of burn-in, eps 0.1, eps-low 0.0875, alpha 0.025).
/// Every preset uses Grad-CAM and the zscore rule.
public enum Presets {
    struct Setting: Sendable {
        let dataset, architecture, summary: String
        let configure: @Sendable (inout TrainingConfig) -> Void
    }

    static func paper(_ c: inout TrainingConfig) {
        cifarRecipe(&c, epochs: 80, burnIn: 20, learningRate: 0.01, weightDecay: 2e-4, schedule: .piecewise,
                    milestones: LearningRateSchedule.officialMilestones(epochs: 80, burnIn: 20), stepSize: 2 / 255, steps: 10)
        c.gamma = 0.1
        c.beta = 6
    }

    /// The paper's and the fast recipes: what they set apart (length, burn-in, schedule, attack
    /// step), and what they share: eps 8/255 (7/255 off the CAM's important pixels), SGD with
    /// momentum 0.9 on batches of 128, and a 20-step check.
    static func cifarRecipe(_ c: inout TrainingConfig, epochs: Int, burnIn: Int, learningRate: Float, weightDecay: Float,
                            schedule: ScheduleKind, milestones: [Int], stepSize: Float, steps: Int) {
        c.epochs = epochs
        c.burnIn = burnIn
        c.learningRate = learningRate
        c.weightDecay = weightDecay
        c.schedule = schedule
        c.milestones = milestones
        c.stepSize = stepSize
        c.steps = steps
        c.batchSize = 128
        c.momentum = 0.9
        c.epsilon = 8 / 255
        c.epsilonLow = 7 / 255
        c.evalSteps = 20
    }

    static let settings: [Setting] = [
        Setting(dataset: "cifar10", architecture: "resnet18", summary: "paper, CIFAR-10, official code settings") { paper(&$0) },
        Setting(dataset: "cifar10", architecture: "wrn-34-10", summary: "paper, CIFAR-10, official code settings") { paper(&$0) },
        Setting(dataset: "svhn", architecture: "resnet18", summary: "paper, SVHN: alpha 1/255, weight decay 3.5e-3") {
            paper(&$0)
            $0.stepSize = 1 / 255
            $0.weightDecay = 3.5e-3
        },
        Setting(dataset: "tinyimagenet", architecture: "resnet18",
                summary: "paper, TinyImageNet-200 (64x64): CIFAR-10 settings") { paper(&$0) },
        Setting(dataset: "fashion-mnist", architecture: "small-cnn",
                summary: "the project's quick recipe (the part train defaults)") { _ in },
    ]

    /// Fast adversarial training on CIFAR-10 (Wong, Rice and Kolter 2020, "Fast is better than
    /// free"): PreAct-ResNet-18, FGSM with a random start (alpha 10/255 at eps 8/255), a one-cycle
    /// schedule peaking at lr 0.2, momentum 0.9, weight decay 5e-4, batch 128, crop and flip, bf16
    /// attack, CAM and training passes, and a class-balanced per-epoch check of 1,000 test images. PART's
    /// fast form keeps eps on the CAM's important pixels and 7/255 elsewhere after the burn-in
    /// (a quarter of the epochs).
    static func fast(_ c: inout TrainingConfig, method: TrainingMethod) {
        c.dataset = "cifar10"
        c.architecture = "preact-resnet18"
        c.apply(method)
        c.generation = .fgsm
        cifarRecipe(&c, epochs: 15, burnIn: 4, learningRate: 0.2, weightDecay: 5e-4, schedule: .onecycle, milestones: [],
                    stepSize: 10 / 255, steps: 1)
        c.precision = .bf16
        c.trainPrecision = .bf16
        c.balancedCheck = true
    }

    /// The fast presets: `cifar10-fast-at` and `cifar10-fast-part`.
    static let fastPresets: [Preset] = [(TrainingMethod.at, "at"), (.part, "part")].map { method, suffix in
        var c = TrainingConfig()
        fast(&c, method: method)
        let name = "cifar10-fast-\(suffix)"
        c.preset = name
        return Preset(name: name, summary: "fast AT (FGSM-RS, one-cycle), Wong et al. 2020", config: c.resolved)
    }

    /// Every preset, setting by setting, in the order of `TrainingMethod.allCases`, then the fast ones.
    public static let all: [Preset] = settings.flatMap { setting in
        TrainingMethod.allCases.map { method in
            var c = TrainingConfig()
            c.dataset = setting.dataset
            c.architecture = setting.architecture
            setting.configure(&c)
            c.apply(method)
            let name = "\(setting.dataset)-\(setting.architecture)-\(method.rawValue)"
            c.preset = name
            return Preset(name: name, summary: setting.summary, config: c)
        }
    } + fastPresets

    public static func named(_ name: String) -> Preset? { all.first { $0.name == name } }
}
