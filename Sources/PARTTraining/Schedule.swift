import Foundation

/// How the learning rate decays over the epochs.
public enum ScheduleKind: String, CaseIterable, Codable, Sendable {
    /// Multiplied by gamma after each milestone epoch (the official PART schedule).
    case piecewise
    /// Cosine annealing from the base rate towards 0 over the epochs after the warm-up.
    case cosine
    /// Linear from 0 up to the base rate at 2/5 of the training steps, then linear down to 0
    /// at the last step, updated every batch (the schedule of Wong, Rice and Kolter 2020's fast
    /// adversarial training).
    case onecycle
}

/// The learning rate of every batch of a run.
///
/// With E epochs, W warm-up epochs, B batches per epoch, base rate r, epochs numbered from 1 and
/// batches from 0:
///
///     piecewise:  r * gamma^(number of milestones m with epoch > m)
///     cosine:     r * (1 + cos(pi * (epoch - 1 - W) / (E - W))) / 2       (epochs after the warm-up)
///     onecycle:   r * interp(t, [0, 2E/5, E], [0, 1, 0]) with t = epoch - 1 + (batch + 1) / B
///     warm-up:    the rate above times ((epoch - 1) * B + batch + 1) / (W * B) while epoch <= W
///
/// so the rate rises linearly batch by batch to its scheduled value during the warm-up, and
/// cosine decays once per epoch (as `CosineAnnealingLR` stepped per epoch, minimum 0). One-cycle
/// is a function of the step alone (t counts epochs in fractions of a batch, as Wong et al.'s
/// `np.interp` does): its first step runs at r / (2E/5 * B) and its last at 0; it takes no
/// warm-up or milestones of its own.
/// The official PART code's schedule is piecewise with milestones after burn-in + 59 and
/// burn-in + 89 epochs, gamma 0.1: its rate drops in epoch 60 of the PART phase.
public struct LearningRateSchedule: Sendable, Equatable {
    public var base: Float
    public var kind: ScheduleKind
    public var milestones: [Int]
    public var gamma: Float
    public var warmupEpochs: Int
    public var epochs: Int

    public init(base: Float, kind: ScheduleKind = .piecewise, milestones: [Int] = [], gamma: Float = 0.1,
                warmupEpochs: Int = 0, epochs: Int) {
        self.base = base
        self.kind = kind
        self.milestones = milestones
        self.gamma = gamma
        self.warmupEpochs = warmupEpochs
        self.epochs = epochs
    }

    /// The rate of batch `batch` (0-based) of epoch `epoch` (1-based), `batches` per epoch.
    public func rate(epoch: Int, batch: Int = 0, batches: Int = 1) -> Float {
        var r: Double
        switch kind {
        case .piecewise:
            r = Double(base) * pow(Double(gamma), Double(milestones.filter { epoch > $0 }.count))
        case .cosine:
            let span = max(epochs - warmupEpochs, 1)
            let t = Double(max(epoch - 1 - warmupEpochs, 0))
            r = Double(base) * (1 + cos(Double.pi * t / Double(span))) / 2
        case .onecycle:
            let b = Double(max(batches, 1)), e = Double(max(epochs, 1))
            let t = Double(epoch - 1) + Double(batch + 1) / b
            let peak = 0.4 * e
            let shape = t <= peak ? t / peak : max(0, (e - t) / (e - peak))
            r = Double(base) * min(max(shape, 0), 1)
        }
        if epoch <= warmupEpochs {
            let done = Double((epoch - 1) * max(batches, 1) + batch + 1)
            r *= done / Double(warmupEpochs * max(batches, 1))
        }
        return Float(r)
    }

    /// The milestones of the official PART schedule that fall inside a run of `epochs` epochs
    /// with `burnIn` burn-in epochs (rate x0.1 from PART-phase epoch 60, x0.01 from 90).
    public static func officialMilestones(epochs: Int, burnIn: Int) -> [Int] {
        [burnIn + 59, burnIn + 89].filter { $0 < epochs }
    }
}
