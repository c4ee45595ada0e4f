import CDNNL

/// Row-major matrix products on oneDNN: C [M, N] = A [M, K] · B [K, N], f32, plain layouts.
public enum MatMul {
    private struct Key: Hashable { let m, k, n: Int; let dtype: DType }
    private static let plans = Locked([Key: DNNLPrimitive]())

    private static func plan(_ key: Key) throws -> DNNLPrimitive {
        try plans.withLock { plans in
            if let p = plans[key] { return p }
            let t = DNNL.type(key.dtype)
            var a = try DNNL.desc([key.m, key.k], dnnl_ab, t), b = try DNNL.desc([key.k, key.n], dnnl_ab, t)
            var c = try DNNL.desc([key.m, key.n], dnnl_ab)
            var desc = dnnl_matmul_desc_t()
            let what = "matrix product [\(key.m), \(key.k)] x [\(key.k), \(key.n)]"
            try DNNL.check(dnnl_matmul_desc_init(&desc, &a, &b, nil, &c), "describe a \(what)")
            let p = try DNNLPrimitive(&desc, what: what, kind: "matrix product")
            plans[key] = p
            return p
        }
    }

    /// a [M, K] · b [K, N] with the operands given as flat row-major tensors of one type (f32
    /// or bf16); the product is f32.
    public static func product(_ a: Tensor, rows m: Int, _ b: Tensor, columns n: Int) throws -> Tensor {
        let k = a.count / Swift.max(m, 1)
        precondition(a.count == m * k && b.count == k * n && a.dtype == b.dtype,
                     "matrix product of \(a.count) \(a.dtype) and \(b.count) \(b.dtype) elements")
        var c = Tensor.uninitialized(shape: [m, n])
        let p = try plan(Key(m: m, k: k, n: n, dtype: a.dtype))
        try p.execute([(DNNL_ARG_SRC, a.rawPointer), (DNNL_ARG_WEIGHTS, b.rawPointer), (DNNL_ARG_DST, c.mutableRawPointer())])
        Profile.addFlops(2 * Double(m) * Double(k) * Double(n))
        return c
    }
}

/// Scatters the columns of a convolution's unfolded input back onto the image ("col2im"):
/// the adjoint of gathering every K x K window (PyTorch's `F.fold`).
public enum Col2Im {
    /// `columns` [N * OH * OW, C * K * K] (column index c * K * K + kh * K + kw, rows in NHWC
    /// output order) summed into an image [N, H, W, C].
    public static func fold(_ columns: Tensor, n: Int, height: Int, width: Int, channels: Int, kernel: Int,
                            stride: Int, padding: Int) -> Tensor {
        let oh = (height + 2 * padding - kernel) / stride + 1, ow = (width + 2 * padding - kernel) / stride + 1
        let kk = kernel * kernel, rowSize = channels * kk
        precondition(columns.count == n * oh * ow * rowSize, "col2im of \(columns.shape) into [\(n), \(height), \(width), \(channels)]")
        if stride == 1 { return gatheredFold(columns, n: n, height: height, width: width, channels: channels,
                                             kernel: kernel, padding: padding, oh: oh, ow: ow) }
        var image = Tensor(shape: [n, height, width, channels])
        let src = columns.readPointer, dst = image.uniquePointer()
        Parallel.forEachIndex(n, cost: oh * ow * rowSize) { b in
            let img = dst + b * height * width * channels
            for y in 0..<oh {
                for x in 0..<ow {
                    let row = src + ((b * oh + y) * ow + x) * rowSize
                    for kh in 0..<kernel {
                        let iy = y * stride - padding + kh
                        if iy < 0 || iy >= height { continue }
                        for kw in 0..<kernel {
                            let ix = x * stride - padding + kw
                            if ix < 0 || ix >= width { continue }
                            let pixel = img + (iy * width + ix) * channels
                            for c in 0..<channels { pixel[c] += row[c * kk + kh * kernel + kw] }
                        }
                    }
                }
            }
        }
        return image
    }

    /// Stride 1 as a gather: each image pixel sums the entries of the windows that cover it, and
    /// is written once (no read-modify-write of the image, rows spread over the cores). The
    /// entries are added in the order the scatter adds them (windows by increasing output row,
    /// then column, i.e. kernel offsets decreasing), so the sums are the same bit for bit.
    private static func gatheredFold(_ columns: Tensor, n: Int, height: Int, width: Int, channels: Int, kernel: Int,
                                     padding: Int, oh: Int, ow: Int) -> Tensor {
        let kk = kernel * kernel, rowSize = channels * kk
        var image = Tensor.uninitialized(shape: [n, height, width, channels])
        let src = columns.readPointer, dst = image.uniquePointer()
        Parallel.forEachIndex(n * height, cost: width * rowSize) { task in
            let b = task / height, iy = task % height
            let line = dst + (b * height + iy) * width * channels
            for ix in 0..<width {
                let pixel = line + ix * channels
                for c in 0..<channels { pixel[c] = 0 }
                for kh in stride(from: kernel - 1, through: 0, by: -1) {
                    let y = iy + padding - kh
                    if y < 0 || y >= oh { continue }
                    for kw in stride(from: kernel - 1, through: 0, by: -1) {
                        let x = ix + padding - kw
                        if x < 0 || x >= ow { continue }
                        let row = src + ((b * oh + y) * ow + x) * rowSize + kh * kernel + kw
                        for c in 0..<channels { pixel[c] += row[c * kk] }
                    }
                }
            }
        }
        return image
    }
}
