import Foundation
import PARTEngine
import XCTest

/// Every op's backward against central finite differences of a double-precision reference
/// forward written here, independently of the engine. For a random projection w, the scalar
/// L(x) = sum(w * op(x)) has dL/dx = backward(w); the reference differentiates L numerically in
/// Double, so the comparison measures the engine, not rounding in the check.
final class GradientCheckTests: XCTestCase {
    var rng = RNG(seed: 42)

    func random(_ shape: [Int], scale: Float = 1) -> Tensor {
        Tensor(shape: shape, values: (0..<shape.reduce(1, *)).map { _ in (rng.uniform() * 2 - 1) * scale })
    }

    /// Numerical gradient of `loss` at `x` by central differences in Double.
    func numericalGradient(_ x: [Double], step: Double = 1e-6, _ loss: ([Double]) -> Double) -> [Double] {
        var g = [Double](repeating: 0, count: x.count)
        var p = x
        for i in 0..<x.count {
            p[i] = x[i] + step
            let up = loss(p)
            p[i] = x[i] - step
            let down = loss(p)
            p[i] = x[i]
            g[i] = (up - down) / (2 * step)
        }
        return g
    }

    func assertGradient(_ analytic: Tensor, _ numeric: [Double], _ what: String, tolerance: Double = 2e-4,
                        file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(analytic.count, numeric.count, what, file: file, line: line)
        let scale = max(numeric.map(abs).max() ?? 0, 1e-12)
        let err = zip(analytic.scalars, numeric).map { abs(Double($0) - $1) }.max() ?? 0
        XCTAssert(err / scale <= tolerance, "\(what): relative error \(err / scale)", file: file, line: line)
    }

    func dot(_ a: [Double], _ b: Tensor) -> Double { zip(a, b.scalars).reduce(0) { $0 + $1.0 * Double($1.1) } }

    // MARK: - reference forwards in Double (NHWC)

    /// `p` pads the top and left edges, `pe` (default `p`) the bottom and right ones.
    func refConv(_ x: [Double], _ xs: [Int], _ w: [Double], _ b: [Double]?, out o: Int, k: Int, stride s: Int,
                 pad p: Int, padEnd pe: Int? = nil, groups g: Int = 1, dilation dl: Int = 1) -> [Double] {
        let (n, h, wd, c) = (xs[0], xs[1], xs[2], xs[3])
        let e = (k - 1) * dl + 1, cg = c / g, og = o / g
        let oh = (h + p + (pe ?? p) - e) / s + 1, ow = (wd + p + (pe ?? p) - e) / s + 1
        var y = [Double](repeating: 0, count: n * oh * ow * o)
        for b0 in 0..<n { for i in 0..<oh { for j in 0..<ow { for oc in 0..<o {
            var acc = b?[oc] ?? 0
            for ig in 0..<cg { for u in 0..<k { for v in 0..<k {
                let r = i * s - p + u * dl, q = j * s - p + v * dl, ic = oc / og * cg + ig
                if r < 0 || r >= h || q < 0 || q >= wd { continue }
                acc += x[((b0 * h + r) * wd + q) * c + ic] * w[((oc * cg + ig) * k + u) * k + v]
            } } }
            y[((b0 * oh + i) * ow + j) * o + oc] = acc
        } } } }
        return y
    }

    func refBatchNormTrain(_ x: [Double], channels c: Int, scale: [Double], shift: [Double], eps: Double = 1e-5) -> [Double] {
        let m = x.count / c
        var y = x
        for k in 0..<c {
            var mean = 0.0, v = 0.0
            for i in 0..<m { mean += x[i * c + k] }
            mean /= Double(m)
            for i in 0..<m { v += (x[i * c + k] - mean) * (x[i * c + k] - mean) }
            v /= Double(m)
            for i in 0..<m { y[i * c + k] = scale[k] * (x[i * c + k] - mean) / (v + eps).squareRoot() + shift[k] }
        }
        return y
    }

    func d(_ t: Tensor) -> [Double] { t.scalars.map(Double.init) }

    // MARK: - tests

    func testConvolution() throws {
        // (2, 0, 1): the bottom-and-right padding of TensorFlow's "SAME" (the DeepMind WideResNets).
        for (stride, pad, padEnd, bias) in [(1, 0, 0, true), (2, 1, 1, false), (1, 1, 1, true), (2, 0, 1, false),
                                            (1, 0, 2, true)] {
            let xs = [2, 7, 6, 3], o = 4, k = 3
            let x = random(xs), w = random([o, 3, k, k]), b = bias ? random([o]) : nil
            let conv = Convolution(inChannels: 3, outChannels: o, kernel: k, stride: stride, padding: pad, paddingEnd: padEnd,
                                   bias: bias)
            let y = try conv.forward(x, weight: w, bias: b, weightVersion: 1)
            let ref = refConv(d(x), xs, d(w), b.map(d), out: o, k: k, stride: stride, pad: pad, padEnd: padEnd)
            XCTAssertEqual(y.shape, [2, (7 + pad + padEnd - k) / stride + 1, (6 + pad + padEnd - k) / stride + 1, o])
            assertGradient(y, ref, "conv forward s\(stride) p\(pad)", tolerance: 1e-5)
            let proj = random(y.shape)
            let g = try conv.backward(proj, x: x, weight: w, weightVersion: 1, needInputGradient: true, needParameterGradients: true)
            assertGradient(g.input!, numericalGradient(d(x)) { xx in
                self.dot(refConv(xx, xs, self.d(w), b.map(self.d), out: o, k: k, stride: stride, pad: pad, padEnd: padEnd), proj)
            }, "conv dx s\(stride) p\(pad)")
            assertGradient(g.weight!, numericalGradient(d(w)) { ww in
                self.dot(refConv(self.d(x), xs, ww, b.map(self.d), out: o, k: k, stride: stride, pad: pad, padEnd: padEnd), proj)
            }, "conv dw s\(stride) p\(pad)")
            if let b {
                assertGradient(g.bias!, numericalGradient(d(b)) { bb in
                    self.dot(refConv(self.d(x), xs, self.d(w), bb, out: o, k: k, stride: stride, pad: pad, padEnd: padEnd), proj)
                }, "conv db")
            }
        }
    }

    /// Grouped (depthwise included) and dilated convolutions: forward, backward-data and
    /// backward-weights against the direct sums.
    func testGroupedAndDilatedConvolution() throws {
        for (groups, dilation, stride, pad) in [(2, 1, 1, 1), (4, 1, 2, 1), (1, 2, 1, 2), (2, 2, 2, 1)] {
            let xs = [2, 7, 6, 4], o = 8, k = 3
            let x = random(xs), w = random([o, 4 / groups, k, k]), b = random([o])
            let conv = Convolution(inChannels: 4, outChannels: o, kernel: k, stride: stride, padding: pad, groups: groups,
                                   dilation: dilation, bias: true)
            func ref(_ xx: [Double], _ ww: [Double]) -> [Double] {
                refConv(xx, xs, ww, d(b), out: o, k: k, stride: stride, pad: pad, groups: groups, dilation: dilation)
            }
            let what = "conv g\(groups) d\(dilation) s\(stride)"
            let y = try conv.forward(x, weight: w, bias: b, weightVersion: 1)
            let e = (k - 1) * dilation + 1
            XCTAssertEqual(y.shape, [2, (7 + 2 * pad - e) / stride + 1, (6 + 2 * pad - e) / stride + 1, o], what)
            assertGradient(y, ref(d(x), d(w)), "\(what) forward", tolerance: 1e-5)
            let proj = random(y.shape)
            let g = try conv.backward(proj, x: x, weight: w, weightVersion: 1, needInputGradient: true, needParameterGradients: true)
            assertGradient(g.input!, numericalGradient(d(x)) { self.dot(ref($0, self.d(w)), proj) }, "\(what) dx")
            assertGradient(g.weight!, numericalGradient(d(w)) { self.dot(ref(self.d(x), $0), proj) }, "\(what) dw")
        }
    }

    /// Overlapping, padded max and average pooling (the padding counted in the divisor or not).
    func testPaddedPooling() throws {
        let xs = [2, 7, 6, 3], (k, s, p) = (3, 2, 1)
        let x = random(xs)
        let (oh, ow) = ((7 + 2 * p - k) / s + 1, (6 + 2 * p - k) / s + 1)
        for kind in [Pooling.Kind.max, .average(includingPadding: true), .average(includingPadding: false)] {
            let pool = Pooling(kernel: k, channels: 3, stride: s, padding: p, kind: kind)
            func ref(_ xx: [Double]) -> [Double] {
                var y = [Double]()
                for b in 0..<2 { for i in 0..<oh { for j in 0..<ow { for c in 0..<3 {
                    var m = -Double.infinity, sum = 0.0, inside = 0
                    for u in 0..<k { for v in 0..<k {
                        let r = i * s - p + u, q = j * s - p + v
                        guard r >= 0 && r < 7 && q >= 0 && q < 6 else { continue }
                        let value = xx[((b * 7 + r) * 6 + q) * 3 + c]
                        (m, sum, inside) = (max(m, value), sum + value, inside + 1)
                    } }
                    switch kind {
                    case .max: y.append(m)
                    case .average(let including): y.append(sum / Double(including ? k * k : inside))
                    }
                } } } }
                return y
            }
            let (y, record) = try pool.forward(x)
            XCTAssertEqual(y.shape, [2, oh, ow, 3])
            assertGradient(y, ref(d(x)), "\(kind) forward", tolerance: 1e-6)
            let proj = random(y.shape)
            assertGradient(try pool.backward(proj, record: record), numericalGradient(d(x)) { self.dot(ref($0), proj) },
                           "\(kind) dx")
        }
    }

    func testBatchNormTraining() throws {
        let xs = [3, 4, 5, 6], c = 6
        let x = random(xs, scale: 2), scale = random([c]).map { $0 + 1.5 }, shift = random([c])
        let bn = BatchNorm(channels: c)
        let (y, record) = try bn.forward(x, scale: scale, shift: shift, training: true,
                                     runningMean: Tensor(shape: [c]), runningVariance: Tensor(shape: [c], repeating: 1))
        assertGradient(y, refBatchNormTrain(d(x), channels: c, scale: d(scale), shift: d(shift)), "bn forward", tolerance: 1e-5)
        let proj = random(xs)
        let g = try bn.backward(proj, x: x, scale: scale, shift: shift, record: record, needParameterGradients: true)
        assertGradient(g.input, numericalGradient(d(x)) { xx in
            self.dot(self.refBatchNormTrain(xx, channels: c, scale: self.d(scale), shift: self.d(shift)), proj)
        }, "bn dx")
        assertGradient(g.scale!, numericalGradient(d(scale)) { ss in
            self.dot(self.refBatchNormTrain(self.d(x), channels: c, scale: ss, shift: self.d(shift)), proj)
        }, "bn dscale")
        assertGradient(g.shift!, numericalGradient(d(shift)) { tt in
            self.dot(self.refBatchNormTrain(self.d(x), channels: c, scale: self.d(scale), shift: tt), proj)
        }, "bn dshift")
    }

    func testBatchNormEvaluation() throws {
        let xs = [2, 3, 3, 4], c = 4
        let x = random(xs), scale = random([c]), shift = random([c])
        let mean = random([c]), variance = random([c]).map { $0 + 1.2 }
        let bn = BatchNorm(channels: c)
        func ref(_ xx: [Double]) -> [Double] {
            xx.enumerated().map { i, v in
                let k = i % c
                return Double(scale[flat: k]) * (v - Double(mean[flat: k])) / (Double(variance[flat: k]) + 1e-5).squareRoot()
                    + Double(shift[flat: k])
            }
        }
        let (y, record) = try bn.forward(x, scale: scale, shift: shift, training: false, runningMean: mean, runningVariance: variance)
        assertGradient(y, ref(d(x)), "bn eval forward", tolerance: 1e-5)
        XCTAssertEqual(record.mean.scalars, mean.scalars)
        let proj = random(xs)
        let g = try bn.backward(proj, x: x, scale: scale, shift: shift, record: record, needParameterGradients: false)
        assertGradient(g.input, numericalGradient(d(x)) { self.dot(ref($0), proj) }, "bn eval dx")
    }

    func testMaxPool() throws {
        let xs = [2, 6, 4, 3]
        let x = random(xs)
        let pool = MaxPool(kernel: 2, channels: 3)
        func ref(_ xx: [Double]) -> [Double] {
            var y = [Double]()
            for b in 0..<2 { for i in 0..<3 { for j in 0..<2 { for c in 0..<3 {
                var m = -Double.infinity
                for u in 0..<2 { for v in 0..<2 { m = max(m, xx[((b * 6 + 2 * i + u) * 4 + 2 * j + v) * 3 + c]) } }
                y.append(m)
            } } } }
            return y
        }
        let (y, record) = try pool.forward(x)
        assertGradient(y, ref(d(x)), "max-pool forward", tolerance: 0)
        let proj = random(y.shape)
        assertGradient(try pool.backward(proj, record: record),
                       numericalGradient(d(x)) { self.dot(ref($0), proj) }, "max-pool dx")
    }

    func testReLU() throws {
        // Keep entries away from the kink, where the derivative is undefined.
        let x = random([3, 7]).map { $0 > 0 ? $0 + 0.01 : $0 - 0.01 }
        let y = try ReLU.forward(x)
        let proj = random(y.shape)
        assertGradient(try ReLU.backward(proj, output: y),
                       numericalGradient(d(x)) { xx in self.dot(xx.map { max($0, 0) }, proj) }, "relu dx")
    }

    func testSiLU() throws {
        let x = random([3, 7], scale: 4)
        func silu(_ v: Double) -> Double { v / (1 + exp(-v)) }
        let y = try SiLU.forward(x)
        assertGradient(y, d(x).map(silu), "silu forward", tolerance: 1e-6)
        let proj = random(y.shape)
        assertGradient(try SiLU.backward(proj, input: x),
                       numericalGradient(d(x)) { xx in self.dot(xx.map(silu), proj) }, "silu dx")
    }

    /// The other functions of `Eltwise` against their definitions, forward and backward.
    func testEltwiseFunctions() throws {
        // Away from the kinks of leaky ReLU (0) and clip (-1, 2).
        let x = random([3, 7], scale: 3).map { v in [0, -1, 2].contains { abs(v - $0) < 0.02 } ? v + 0.05 : v }
        let functions: [(Eltwise, (Double) -> Double)] = [
            (.sigmoid, { 1 / (1 + exp(-$0)) }), (.tanh, { Foundation.tanh($0) }), (.softplus, { log(1 + exp($0)) }),
            (.leakyReLU(slope: 0.1), { $0 > 0 ? $0 : 0.1 * $0 }), (.elu(alpha: 0.7), { $0 > 0 ? $0 : 0.7 * (exp($0) - 1) }),
            (.clip(low: -1, high: 2), { min(max($0, -1), 2) }),
        ]
        for (f, reference) in functions {
            let y = try f.forward(x)
            assertGradient(y, d(x).map(reference), "\(f.name) forward", tolerance: 1e-5)
            let proj = random(y.shape)
            assertGradient(try f.backward(proj, saved: f.usesOutput ? y : x),
                           numericalGradient(d(x)) { xx in self.dot(xx.map(reference), proj) }, "\(f.name) dx")
        }
    }

    func testGlobalAveragePoolAndFlatten() throws {
        let xs = [2, 3, 4, 5]
        let x = random(xs)
        func refPool(_ xx: [Double]) -> [Double] {
            var y = [Double](repeating: 0, count: 10)
            for b in 0..<2 { for p in 0..<12 { for c in 0..<5 { y[b * 5 + c] += xx[(b * 12 + p) * 5 + c] / 12 } } }
            return y
        }
        let y = GlobalAveragePool.forward(x)
        assertGradient(y, refPool(d(x)), "avg-pool forward", tolerance: 1e-6)
        let proj = random(y.shape)
        assertGradient(GlobalAveragePool.backward(proj, inputShape: xs),
                       numericalGradient(d(x)) { self.dot(refPool($0), proj) }, "avg-pool dx")

        // Flatten is a permutation to C, H, W order: forward then backward is the identity.
        let f = FlattenCHW.forward(x)
        XCTAssertEqual(f[flat: 1], x[flat: 5], "second element of a CHW flatten is (c0, h0, w1)")
        XCTAssertEqual(FlattenCHW.backward(f, inputShape: xs).scalars, x.scalars)
        XCTAssertEqual(Layout.nchwToNHWC(Layout.nhwcToNCHW(x)).scalars, x.scalars)
    }

    func testCrossEntropy() throws {
        let logits = random([4, 6], scale: 3)
        let labels: [Int32] = [0, 5, 2, 2]
        func ref(_ z: [Double]) -> Double {
            (0..<4).reduce(0.0) { acc, b in
                let row = Array(z[(b * 6)..<(b * 6 + 6)])
                let m = row.max()!
                return acc + (m + log(row.reduce(0) { $0 + exp($1 - m) }) - row[Int(labels[b])]) / 4
            }
        }
        let (loss, grad) = CrossEntropy.forwardBackward(logits: logits, labels: labels)
        XCTAssertEqual(Double(loss), ref(d(logits)), accuracy: 1e-6)
        assertGradient(grad, numericalGradient(d(logits), ref), "cross-entropy dlogits")
    }

    /// Linear layers run as 1x1 convolutions on [N, 1, 1, in]: check that path against a
    /// double matrix product.
    func testInnerProductAsConvolution() throws {
        let x = random([3, 1, 1, 5]), w = random([4, 5, 1, 1]), b = random([4])
        let conv = Convolution(inChannels: 5, outChannels: 4, kernel: 1, bias: true)
        func ref(_ xx: [Double], _ ww: [Double]) -> [Double] {
            (0..<3).flatMap { n in (0..<4).map { o in (0..<5).reduce(Double(b[flat: o])) { $0 + xx[n * 5 + $1] * ww[o * 5 + $1] } } }
        }
        let y = try conv.forward(x, weight: w, bias: b, weightVersion: 7)
        assertGradient(y, ref(d(x), d(w)), "linear forward", tolerance: 1e-6)
        let proj = random(y.shape)
        let g = try conv.backward(proj, x: x, weight: w, weightVersion: 7, needInputGradient: true, needParameterGradients: true)
        assertGradient(g.input!, numericalGradient(d(x)) { self.dot(ref($0, self.d(w)), proj) }, "linear dx")
        assertGradient(g.weight!, numericalGradient(d(w)) { self.dot(ref(self.d(x), $0), proj) }, "linear dw")
    }

    /// Reordered weights are refreshed when the version changes and reused otherwise.
    func testWeightVersionControlsTheReorderedCopy() throws {
        let x = random([1, 5, 5, 8]), w1 = random([16, 8, 3, 3]), w2 = random([16, 8, 3, 3])
        let conv = Convolution(inChannels: 8, outChannels: 16, kernel: 3, bias: false)
        let a = try conv.forward(x, weight: w1, bias: nil, weightVersion: 1)
        let b = try conv.forward(x, weight: w2, bias: nil, weightVersion: 2)
        let fresh = Convolution(inChannels: 8, outChannels: 16, kernel: 3, bias: false)
        XCTAssertEqual(b.scalars, try fresh.forward(x, weight: w2, bias: nil, weightVersion: 1).scalars)
        XCTAssertNotEqual(a.scalars, b.scalars)
    }
}
