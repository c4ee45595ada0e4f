import Foundation

/// The run's sequential source of randomness (shuffling, initialisation): xoshiro256** seeded through SplitMix64.
///
/// Its whole state is four words, so a run's randomness can be saved in a checkpoint and
/// restored exactly (`state`, `init(state:)`). Every random decision of the project (weight
/// initialisation, shuffling, attack random starts) draws from an `RNG` passed in
/// explicitly; nothing reads a global generator.
public struct RNG: RandomNumberGenerator, Sendable, Equatable {
    public private(set) var state: [UInt64]

    /// A generator whose stream is fully determined by `seed`.
    public init(seed: UInt64) {
        var s = seed
        var words = [UInt64]()
        for _ in 0..<4 {
            s &+= 0x9E37_79B9_7F4A_7C15
            var z = s
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            words.append(z ^ (z >> 31))
        }
        state = words
    }

    /// Restores a generator saved with `state`.
    public init(state: [UInt64]) {
        precondition(state.count == 4 && state.contains { $0 != 0 }, "an RNG state is four words, not all zero")
        self.state = state
    }

    public mutating func next() -> UInt64 {
        let result = rotl(state[1] &* 5, 7) &* 9
        let t = state[1] << 17
        state[2] ^= state[0]
        state[3] ^= state[1]
        state[1] ^= state[2]
        state[0] ^= state[3]
        state[2] ^= t
        state[3] = rotl(state[3], 45)
        return result
    }

    /// A fresh generator for a sub-task, derived from this one's stream.
    public mutating func split() -> RNG { RNG(seed: next()) }

    /// A uniformly random permutation of 0..<n (Fisher-Yates).
    public mutating func permutation(_ n: Int) -> [Int] {
        var p = Array(0..<n)
        if n > 1 {
            for i in stride(from: n - 1, to: 0, by: -1) {
                p.swapAt(i, Int(next() % UInt64(i + 1)))
            }
        }
        return p
    }

    private func rotl(_ x: UInt64, _ k: UInt64) -> UInt64 { (x << k) | (x >> (64 - k)) }
}

@inline(__always) func _logD(_ x: Double) -> Double { Foundation.log(x) }
@inline(__always) func _cosD(_ x: Double) -> Double { Foundation.cos(x) }
