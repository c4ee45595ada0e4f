import Foundation
@testable import PARTEngine
import XCTest

/// `Parallel` on OpenMP's threads: every index exactly once whatever the thread count, inside
/// another parallel loop too, and reductions with the same bits for every thread count.
final class ParallelTests: XCTestCase {
    /// How many times each index of `0..<count` was visited.
    func visits(_ count: Int, grain: Int, nested inner: Int = 0) -> [Int] {
        let counters = UnsafeMutablePointer<Int>.allocate(capacity: count * Swift.max(inner, 1))
        counters.initialize(repeating: 0, count: count * Swift.max(inner, 1))
        defer { counters.deallocate() }
        Parallel.forEach(count, grain: grain) { range in
            for i in range {
                if inner == 0 {
                    counters[i] += 1
                } else {
                    Parallel.forEach(inner, grain: 1) { r in
                        for j in r { counters[i * inner + j] += 1 }
                    }
                }
            }
        }
        return Array(UnsafeBufferPointer(start: counters, count: count * Swift.max(inner, 1)))
    }

    func testTheLoopsRunOnOpenMPThreadsWhereOneDNNDoes() {
        // Debian's oneDNN threads with libgomp; the engine's loops must share its team.
        XCTAssertNotNil(OpenMPTeam.shared)
    }

    func testEveryIndexRunsExactlyOnceForAnyThreadCount() {
        for threads in [1, 2, 3, 5] {
            Engine.withThreads(threads) {
                for (count, grain) in [(1, 1), (7, 1), (100, 3), (1000, 7), (65_537, 32_768)] {
                    XCTAssertEqual(visits(count, grain: grain), [Int](repeating: 1, count: count),
                                   "threads \(threads), count \(count), grain \(grain)")
                }
            }
        }
    }

    func testALoopInsideALoopRunsEveryPairOnce() {
        for threads in [2, 3] {
            Engine.withThreads(threads) {
                XCTAssertEqual(visits(9, grain: 1, nested: 5), [Int](repeating: 1, count: 45), "threads \(threads)")
            }
        }
    }

    func testSumsHaveTheSameBitsForEveryThreadCount() {
        let values: [Double] = (0..<200_003).map { (i: Int) -> Double in
            let spread = Double((i * 7919) % 1000)
            return spread * 1e-3 + 1e-9 * Double(i)
        }
        var sums = [Double]()
        for threads in [1, 2, 4] {
            sums.append(Engine.withThreads(threads) {
                values.withUnsafeBufferPointer { v in
                    Parallel.sum(v.count, grain: 1000) { r in r.reduce(0.0) { $0 + v[$1] } }
                }
            })
        }
        XCTAssertEqual(sums[0].bitPattern, sums[1].bitPattern)
        XCTAssertEqual(sums[0].bitPattern, sums[2].bitPattern)
        XCTAssertEqual(sums[0], values.reduce(0, +), accuracy: 1e-6)
    }
}
