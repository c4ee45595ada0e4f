/// Counter-based randomness keyed by what a draw belongs to (docs/conventions.md#2-randomness).
///
/// Every draw that belongs to one example (an augmentation, a random start, a restart, a
/// Square proposal, TRADES/MART start noise) comes from a stream keyed by
/// (run seed, purpose, dataset index, step), never from a stream shared across a batch. So
/// batch size, batch order, subsets, prefetching, resuming and a split across processes change
/// no example: the stream of example 17 at epoch 3 is the same wherever it is drawn.
///
/// The key is hashed with SplitMix64's finaliser (one mixing round per key word), and the
/// stream is SplitMix64 from that hash: stateless to create, 64 bits per draw, and good enough
/// for Monte-Carlo use (it passes BigCrush as a stream; keys that differ in one word give
/// unrelated streams).
public struct RandomKey: Hashable, Sendable {
    public var seed: UInt64
    public var purpose: RandomPurpose
    /// The example's index in its dataset (not its row in a batch).
    public var index: Int
    /// The epoch, attack step or restart the draw belongs to.
    public var step: Int

    public init(seed: UInt64, purpose: RandomPurpose, index: Int, step: Int = 0) {
        self.seed = seed
        self.purpose = purpose
        self.index = index
        self.step = step
    }
}

/// What a keyed draw is for; distinct purposes give unrelated streams for the same example.
public struct RandomPurpose: RawRepresentable, Hashable, Sendable {
    public let rawValue: UInt64
    public init(rawValue: UInt64) { self.rawValue = rawValue }

    /// Random start of an attack (step = restart number).
    public static let randomStart = RandomPurpose(rawValue: 0x5354_4152_54)
    /// Data augmentation (step = epoch).
    public static let augmentation = RandomPurpose(rawValue: 0x4155_474D)
    /// Gaussian start noise of TRADES and MART generation (step = epoch).
    public static let startNoise = RandomPurpose(rawValue: 0x4E4F_4953_45)
    /// Square attack's proposals (step = restart).
    public static let square = RandomPurpose(rawValue: 0x5351_5541_5245)
    /// FAB's random starts (step = restart).
    public static let fab = RandomPurpose(rawValue: 0x4641_42)
}

/// A stream of random bits determined by a `RandomKey` alone.
public struct KeyedStream: RandomNumberGenerator, Sendable {
    private var state: UInt64

    public init(_ key: RandomKey) {
        var h = KeyedStream.mix(key.seed &+ 0x9E37_79B9_7F4A_7C15)
        h = KeyedStream.mix(h ^ key.purpose.rawValue)
        h = KeyedStream.mix(h ^ UInt64(bitPattern: Int64(key.index)))
        h = KeyedStream.mix(h ^ UInt64(bitPattern: Int64(key.step)) &* 0xD1B5_4A32_D192_ED03)
        state = h
    }

    public init(seed: UInt64, purpose: RandomPurpose, index: Int, step: Int = 0) {
        self.init(RandomKey(seed: seed, purpose: purpose, index: index, step: step))
    }

    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        return KeyedStream.mix(state)
    }

    /// SplitMix64's finaliser: a bijection of 64-bit words with full avalanche.
    @inline(__always) static func mix(_ x: UInt64) -> UInt64 {
        var z = x
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

extension RandomNumberGenerator {
    /// Uniform in [0, 1) with 24 random bits (every value exactly representable as a Float).
    @inline(__always) public mutating func uniform() -> Float {
        Float(next() >> 40) * (1.0 / 16_777_216.0)
    }

    /// Uniform in [-1, 1).
    @inline(__always) public mutating func symmetricUniform() -> Float {
        uniform() * 2 - 1
    }

    /// Standard normal (Box-Muller on two uniforms of 53 bits).
    public mutating func normal() -> Float {
        let u1 = Double((next() >> 11) + 1) * (1.0 / 9_007_199_254_740_993.0)
        let u2 = Double(next() >> 11) * (1.0 / 9_007_199_254_740_992.0)
        return Float((-2 * _logD(u1)).squareRoot() * _cosD(2 * Double.pi * u2))
    }
}

extension KeyedStream {
    /// A seed for a sub-task (an epoch's attacks, a stage of an evaluation) derived from a run's
    /// seed and a step number, so that sub-tasks draw unrelated streams.
    public static func derivedSeed(_ seed: UInt64, _ step: Int) -> UInt64 {
        mix(mix(seed ^ 0xA076_1D64_78BD_642F) ^ UInt64(bitPattern: Int64(step)))
    }
}
