/// Ops on the rows of a batch: a tensor [N, ...] is N rows of `count / N` elements (an image,
/// a map, a row of logits). Attacks use them to work on a subset of a batch by index, and to
/// reduce per example.
extension Tensor {
    /// Elements per row (everything after the first dimension).
    public var rowSize: Int { shape.isEmpty ? 1 : shape.dropFirst().reduce(1, *) }

    /// Rows `indices` (in that order) as a new tensor [indices.count, ...] of this tensor's type.
    public func gatherRows(_ indices: [Int]) -> Tensor {
        let size = rowSize * dtype.size
        var out = Tensor.uninitialized(shape: [indices.count] + shape.dropFirst(), dtype: dtype)
        let s = rawPointer, d = out.mutableRawPointer()
        let rows = shape.first ?? 0
        indices.withUnsafeBufferPointer { idx in
            Parallel.forEachIndex(idx.count, cost: rowSize) { r in
                precondition(idx[r] >= 0 && idx[r] < rows, "row \(idx[r]) outside 0..<\(rows)")
                (d + r * size).copyMemory(from: s + idx[r] * size, byteCount: size)
            }
        }
        return out
    }

    /// Writes row r of `source` into row `indices[r]` of this tensor.
    public mutating func scatterRows(_ source: Tensor, to indices: [Int]) {
        let size = rowSize
        precondition(source.rowSize == size && source.shape.first == indices.count,
                     "cannot scatter \(source.shape) into rows of \(shape)")
        let rows = shape.first ?? 0
        let s = source.readPointer, d = uniquePointer()
        indices.withUnsafeBufferPointer { idx in
            Parallel.forEachIndex(idx.count, cost: size) { r in
                precondition(idx[r] >= 0 && idx[r] < rows, "row \(idx[r]) outside 0..<\(rows)")
                (d + idx[r] * size).update(from: s + r * size, count: size)
            }
        }
    }

    /// Per-row sums, accumulated in double precision.
    public func rowSums() -> [Float] {
        rowReduce { p, n in
            var s = 0.0
            for i in 0..<n { s += Double(p[i]) }
            return Float(s)
        }
    }

    /// Per-row Euclidean norms.
    public func rowNorms() -> [Float] {
        rowReduce { p, n in
            var s = 0.0
            for i in 0..<n { s += Double(p[i]) * Double(p[i]) }
            return Float(s.squareRoot())
        }
    }

    /// Per-row largest absolute values.
    public func rowMaxAbs() -> [Float] {
        rowReduce { p, n in
            var m: Float = 0
            for i in 0..<n { m = Swift.max(m, Swift.abs(p[i])) }
            return m
        }
    }

    /// Per-row population mean and standard deviation (double-precision accumulation).
    public func rowMeanStd() -> [(mean: Double, std: Double)] {
        let n = shape.first ?? 0, size = rowSize
        var out = [(mean: Double, std: Double)](repeating: (0, 0), count: n)
        let p = readPointer
        out.withUnsafeMutableBufferPointer { o in
            let base = o.baseAddress!
            Parallel.forEachIndex(n, cost: size) { b in
                let row = p + b * size
                var mean = 0.0
                for i in 0..<size { mean += Double(row[i]) }
                mean /= Double(Swift.max(size, 1))
                var v = 0.0
                for i in 0..<size { v += (Double(row[i]) - mean) * (Double(row[i]) - mean) }
                base[b] = (mean, (v / Double(Swift.max(size, 1))).squareRoot())
            }
        }
        return out
    }

    /// Multiplies row r by `factors[r]`.
    public mutating func scaleRows(by factors: [Float]) {
        let size = rowSize
        precondition(factors.count == (shape.first ?? 0), "\(factors.count) factors for \(shape.first ?? 0) rows")
        let d = uniquePointer()
        factors.withUnsafeBufferPointer { f in
            Parallel.forEachIndex(f.count, cost: size) { b in
                let row = d + b * size, s = f[b]
                for i in 0..<size { row[i] *= s }
            }
        }
    }

    /// Per-row min-max normalisation to [0, 1]; a row whose range is zero becomes all zeros
    /// (never NaN).
    public func minMaxNormalisedRows() -> Tensor {
        let n = shape.first ?? 0, size = rowSize
        var out = Tensor.uninitialized(shape: shape)
        let s = readPointer, d = out.uniquePointer()
        Parallel.forEachIndex(n, cost: size) { b in
            let row = s + b * size, o = d + b * size
            var lo = Float.infinity, hi = -Float.infinity
            for i in 0..<size { lo = Swift.min(lo, row[i]); hi = Swift.max(hi, row[i]) }
            let range = hi - lo
            if range > 0 && range.isFinite {
                for i in 0..<size { o[i] = (row[i] - lo) / range }
            } else {
                o.update(repeating: 0, count: size)
            }
        }
        return out
    }

    /// Per-row arg-max of a [N, K] tensor (the first index on ties, as PyTorch).
    public func argmaxRows() -> [Int32] {
        precondition(shape.count == 2, "argmax over rows needs [N, K], got \(shape)")
        let k = shape[1]
        return rowReduce { p, _ in
            var best = 0
            for j in 1..<Swift.max(k, 1) where p[j] > p[best] { best = j }
            return Int32(best)
        }
    }

    /// `reduce(rowPointer, rowSize)` for every row, spread over the workers.
    public func rowReduce<T>(_ reduce: (UnsafeMutablePointer<Float>, Int) -> T) -> [T] {
        let n = shape.first ?? 0, size = rowSize
        let p = readPointer
        var out = [T?](repeating: nil, count: n)
        out.withUnsafeMutableBufferPointer { o in
            let base = o.baseAddress!
            Parallel.forEachIndex(n, cost: size) { b in base[b] = reduce(p + b * size, size) }
        }
        return out.map { $0! }
    }
}
