import Foundation

/// Element types. Every tensor the user sees is `f32`; `bf16` (bfloat16: the upper half of an
/// f32) lives only inside passes run in reduced precision (attack and CAM passes, training
/// passes with `--train-precision bf16`), where oneDNN's kernels read and write it and Swift
/// code never touches its elements.
public enum DType: String, Sendable, Codable {
    case f32, bf16

    /// Bytes per element.
    public var size: Int { self == .f32 ? 4 : 2 }
}

/// A dense tensor: a shape, an element type and contiguous, 64-byte aligned storage.
///
/// Images and activations are NHWC (`[N, H, W, C]`); parameters keep PyTorch's layouts
/// (convolution weights OIHW, linear weights `[out, in]`), so checkpoints are plain copies
/// and oneDNN reorders weights where its kernels want another layout.
///
/// `Tensor` has value semantics: storage is shared until a mutation, which copies it if
/// another tensor still refers to it (copy on write). Element access from Swift
/// (`readPointer`, `scalars`, the buffer-pointer methods) is for `f32` tensors only.
// Safe: a tensor is a value; a mutation first copies storage that another tensor still refers
// to (copy on write), so two threads holding copies never write the same memory.
public struct Tensor: @unchecked Sendable {
    public private(set) var shape: [Int]
    @usableFromInline var storage: TensorStorage

    /// Number of elements.
    public var count: Int { storage.count }

    /// The element type.
    public var dtype: DType { storage.dtype }

    /// A tensor of the given shape filled with `value`.
    public init(shape: [Int], repeating value: Float = 0) {
        precondition(shape.allSatisfy { $0 >= 0 }, "negative dimension in \(shape)")
        self.shape = shape
        self.storage = TensorStorage(count: Allocation.elements(shape), dtype: .f32, shape: shape)
        storage.pointer.initialize(repeating: value, count: storage.count)
    }

    /// A tensor of the given shape holding `values` in row-major order.
    public init(shape: [Int], values: [Float]) {
        precondition(shape.reduce(1, *) == values.count,
                     "shape \(shape) needs \(shape.reduce(1, *)) values, got \(values.count)")
        self.shape = shape
        self.storage = TensorStorage(count: values.count, dtype: .f32)
        values.withUnsafeBufferPointer { storage.pointer.update(from: $0.baseAddress!, count: values.count) }
    }

    /// A tensor whose storage is left uninitialised, for kernels that overwrite all of it.
    public static func uninitialized(shape: [Int], dtype: DType = .f32) -> Tensor {
        Tensor(shape: shape, storage: TensorStorage(count: Allocation.elements(shape), dtype: dtype, shape: shape))
    }

    init(shape: [Int], storage: TensorStorage) {
        self.shape = shape
        self.storage = storage
    }

    /// The elements in row-major order.
    public var scalars: [Float] {
        Array(UnsafeBufferPointer(start: readPointer, count: count))
    }

    /// The same elements under another shape with the same element count.
    public func reshaped(_ newShape: [Int]) -> Tensor {
        precondition(newShape.reduce(1, *) == count, "cannot reshape \(shape) to \(newShape)")
        return Tensor(shape: newShape, storage: storage)
    }

    public func withUnsafeBufferPointer<R>(_ body: (UnsafeBufferPointer<Float>) throws -> R) rethrows -> R {
        try body(UnsafeBufferPointer(start: readPointer, count: count))
    }

    public mutating func withUnsafeMutableBufferPointer<R>(
        _ body: (UnsafeMutableBufferPointer<Float>) throws -> R
    ) rethrows -> R {
        precondition(dtype == .f32, "element access to a \(dtype) tensor")
        makeUnique()
        return try body(UnsafeMutableBufferPointer(start: storage.pointer, count: count))
    }

    /// Copies the storage if another tensor shares it.
    mutating func makeUnique() {
        if !isKnownUniquelyReferenced(&storage) {
            let copy = TensorStorage(count: count, dtype: dtype, shape: shape)
            copy.raw.copyMemory(from: storage.raw, byteCount: count * dtype.size)
            storage = copy
        }
    }

    /// Read-only base address of an f32 tensor, for kernels that only read it.
    @inlinable public var readPointer: UnsafeMutablePointer<Float> {
        precondition(storage.dtype == .f32, "element access to a \(storage.dtype) tensor")
        return storage.pointer
    }

    /// Read-only base address of any tensor, for handing to C kernels that only read it.
    public var rawPointer: UnsafeMutableRawPointer { storage.raw }

    /// A writable base address of any tensor after making its storage unique.
    public mutating func mutableRawPointer() -> UnsafeMutableRawPointer {
        makeUnique()
        return storage.raw
    }

    /// Element access by flat index (slow path; kernels use the buffer pointers).
    public subscript(flat index: Int) -> Float {
        get { readPointer[index] }
        set { withUnsafeMutableBufferPointer { $0[index] = newValue } }
    }

    /// Rows `range` of the first dimension, copied.
    public func slice(_ range: Range<Int>) -> Tensor {
        precondition(!shape.isEmpty && range.lowerBound >= 0 && range.upperBound <= shape[0])
        let inner = shape.isEmpty ? 1 : count / Swift.max(shape[0], 1)
        var out = Tensor.uninitialized(shape: [range.count] + shape.dropFirst(), dtype: dtype)
        let size = dtype.size
        out.mutableRawPointer().copyMemory(from: storage.raw + range.lowerBound * inner * size,
                                           byteCount: range.count * inner * size)
        return out
    }
}

/// Owned, aligned storage, drawn from `BufferPool`.
@usableFromInline final class TensorStorage {
    let raw: UnsafeMutableRawPointer
    /// The storage as Float elements (meaningful for f32 storage only).
    @usableFromInline let pointer: UnsafeMutablePointer<Float>
    @usableFromInline let count: Int
    @usableFromInline let dtype: DType

    init(count: Int, dtype: DType, shape: [Int]? = nil) {
        self.count = count
        self.dtype = dtype
        guard let bytes = TensorStorage.checkedBytes(count, dtype) else { Allocation.fail(bytes: nil, shape: shape ?? [count]) }
        raw = BufferPool.shared.take(bytes: bytes, shape: shape ?? [count])
        pointer = raw.bindMemory(to: Float.self, capacity: (TensorStorage.bytes(count, dtype) + 3) / 4)
    }

    static func bytes(_ count: Int, _ dtype: DType) -> Int { (Swift.max(count, 1) * dtype.size + 63) / 64 * 64 }

    /// `bytes`, nil when the size does not fit in an `Int`.
    static func checkedBytes(_ count: Int, _ dtype: DType) -> Int? {
        let (product, overflow) = Swift.max(count, 1).multipliedReportingOverflow(by: dtype.size)
        guard !overflow, product <= Int.max - 64 else { return nil }
        return (product + 63) / 64 * 64
    }

    deinit { BufferPool.shared.give(raw, bytes: TensorStorage.bytes(count, dtype)) }
}

/// Keeps freed large buffers for reuse, by exact size.
///
/// A training or attack step allocates the same activation and gradient sizes every step.
/// Buffers above the C allocator's mmap threshold (32 MiB at most in glibc, which ResNet
/// activations at batch 128 exceed) would otherwise be unmapped when freed and mapped again,
/// page-faulting on every first touch; reusing them makes the steady state allocation-free.
/// The pool holds at most `limit` bytes and only buffers of at least 64 KiB.
// Safe: `free` and `pooledBytes` are touched only while `lock` is held; `limit` is a constant.
public final class BufferPool: @unchecked Sendable {
    public static let shared = BufferPool()

    private let lock = NSLock()
    private var free: [Int: [UnsafeMutableRawPointer]] = [:]
    private var pooledBytes = 0
    /// Most bytes kept for reuse (default 2 GiB).
    public let limit = 2 << 30
    private static let smallest = 64 << 10

    /// Bytes currently held for reuse.
    public var heldBytes: Int {
        lock.lock()
        defer { lock.unlock() }
        return pooledBytes
    }

    func take(bytes: Int, shape: [Int]) -> UnsafeMutableRawPointer {
        if bytes >= BufferPool.smallest && Optimizations.isEnabled(.pool) {
            lock.lock()
            if let p = free[bytes]?.popLast() {
                pooledBytes -= bytes
                lock.unlock()
                return p
            }
            lock.unlock()
        }
        // posix_memalign reports a failure where Swift's allocate would trap.
        var pointer: UnsafeMutableRawPointer?
        guard posix_memalign(&pointer, 64, bytes) == 0, let pointer else { Allocation.fail(bytes: bytes, shape: shape) }
        return pointer
    }

    func give(_ pointer: UnsafeMutableRawPointer, bytes: Int) {
        if bytes >= BufferPool.smallest && Optimizations.isEnabled(.pool) {
            lock.lock()
            if pooledBytes + bytes <= limit {
                free[bytes, default: []].append(pointer)
                pooledBytes += bytes
                lock.unlock()
                return
            }
            lock.unlock()
        }
        releaseMemory(pointer)
    }

    /// Returns every held buffer to the system.
    public func drain() {
        lock.lock()
        let all = free
        free = [:]
        pooledBytes = 0
        lock.unlock()
        for (_, pointers) in all { for p in pointers { releaseMemory(p) } }
    }
}

/// Frees what `posix_memalign` gave (`BufferPool.take`).
private func releaseMemory(_ pointer: UnsafeMutableRawPointer) { free(pointer) }

/// Where a tensor that cannot be allocated ends the process: one line naming its shape and
/// size on standard error and exit code 1, instead of the runtime's trap and backtrace. Sizes
/// are checked up front where they come from outside (class counts, batch sizes, image sizes,
/// model sizes: `Limits`); this is the last line for what those checks cannot foresee.
public enum Allocation {
    public static func fail(bytes: Int?, shape: [Int]) -> Never {
        let size = bytes.map { "\($0) bytes" } ?? "more bytes than memory can address"
        FileHandle.standardError.write(Data(("part: error: out of memory: cannot allocate \(size) for a tensor of shape "
                                             + "\(shape); lower --batch-size, choose a smaller --arch or free memory\n").utf8))
        exit(1)
    }

    /// The element count of `shape`; a negative dimension or a product that overflows ends the
    /// process as `fail` does.
    public static func elements(_ shape: [Int]) -> Int {
        var product = 1
        for d in shape {
            guard d >= 0 else { preconditionFailure("negative dimension in \(shape)") }
            let (p, overflow) = product.multipliedReportingOverflow(by: d)
            if overflow { fail(bytes: nil, shape: shape) }
            product = p
        }
        return product
    }
}

extension Tensor: CustomStringConvertible {
    public var description: String {
        let head = scalars.prefix(8).map { String(format: "%.5g", $0) }.joined(separator: ", ")
        return "Tensor(\(shape): [\(head)\(count > 8 ? ", ..." : "")])"
    }
}
