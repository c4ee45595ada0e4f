import Foundation

/// A dense Float32 tensor: a shape and contiguous, 64-byte aligned storage.
///
/// Images and activations are NHWC (`[N, H, W, C]`); parameters keep PyTorch's layouts
/// (convolution weights OIHW, linear weights `[out, in]`), so checkpoints are plain copies
/// and oneDNN reorders weights where its kernels want another layout.
///
/// `Tensor` has value semantics: storage is shared until a mutation, which copies it if
/// another tensor still refers to it (copy on write).
public struct Tensor: @unchecked Sendable {
    public private(set) var shape: [Int]
    @usableFromInline var storage: TensorStorage

    /// Number of elements.
    public var count: Int { storage.count }

    /// A tensor of the given shape filled with `value`.
    public init(shape: [Int], repeating value: Float = 0) {
        precondition(shape.allSatisfy { $0 >= 0 }, "negative dimension in \(shape)")
        self.shape = shape
        self.storage = TensorStorage(count: shape.reduce(1, *))
        storage.pointer.initialize(repeating: value, count: storage.count)
    }

    /// A tensor of the given shape holding `values` in row-major order.
    public init(shape: [Int], values: [Float]) {
        precondition(shape.reduce(1, *) == values.count,
                     "shape \(shape) needs \(shape.reduce(1, *)) values, got \(values.count)")
        self.shape = shape
        self.storage = TensorStorage(count: values.count)
        values.withUnsafeBufferPointer { storage.pointer.update(from: $0.baseAddress!, count: values.count) }
    }

    /// A tensor whose storage is left uninitialised, for kernels that overwrite all of it.
    public static func uninitialized(shape: [Int]) -> Tensor {
        Tensor(shape: shape, storage: TensorStorage(count: shape.reduce(1, *)))
    }

    init(shape: [Int], storage: TensorStorage) {
        self.shape = shape
        self.storage = storage
    }

    /// The elements in row-major order.
    public var scalars: [Float] {
        Array(UnsafeBufferPointer(start: storage.pointer, count: count))
    }

    /// The same elements under another shape with the same element count.
    public func reshaped(_ newShape: [Int]) -> Tensor {
        precondition(newShape.reduce(1, *) == count, "cannot reshape \(shape) to \(newShape)")
        return Tensor(shape: newShape, storage: storage)
    }

    public func withUnsafeBufferPointer<R>(_ body: (UnsafeBufferPointer<Float>) throws -> R) rethrows -> R {
        try body(UnsafeBufferPointer(start: storage.pointer, count: count))
    }

    public mutating func withUnsafeMutableBufferPointer<R>(
        _ body: (UnsafeMutableBufferPointer<Float>) throws -> R
    ) rethrows -> R {
        if !isKnownUniquelyReferenced(&storage) {
            let copy = TensorStorage(count: count)
            copy.pointer.update(from: storage.pointer, count: count)
            storage = copy
        }
        return try body(UnsafeMutableBufferPointer(start: storage.pointer, count: count))
    }

    /// Read-only base address, for handing to C kernels that only read it.
    @inlinable public var readPointer: UnsafeMutablePointer<Float> { storage.pointer }

    /// Element access by flat index (slow path; kernels use the buffer pointers).
    public subscript(flat index: Int) -> Float {
        get { storage.pointer[index] }
        set { withUnsafeMutableBufferPointer { $0[index] = newValue } }
    }

    /// Rows `range` of the first dimension, copied.
    public func slice(_ range: Range<Int>) -> Tensor {
        precondition(!shape.isEmpty && range.lowerBound >= 0 && range.upperBound <= shape[0])
        let inner = shape.isEmpty ? 1 : count / Swift.max(shape[0], 1)
        var out = Tensor.uninitialized(shape: [range.count] + shape.dropFirst())
        out.withUnsafeMutableBufferPointer {
            $0.baseAddress!.update(from: storage.pointer + range.lowerBound * inner, count: range.count * inner)
        }
        return out
    }
}

/// Owned, aligned Float storage, drawn from `BufferPool`.
@usableFromInline final class TensorStorage {
    @usableFromInline let pointer: UnsafeMutablePointer<Float>
    let count: Int

    init(count: Int) {
        self.count = count
        let raw = BufferPool.shared.take(bytes: Swift.max(count, 1) * 4)
        self.pointer = raw.bindMemory(to: Float.self, capacity: Swift.max(count, 1))
    }

    deinit { BufferPool.shared.give(UnsafeMutableRawPointer(pointer), bytes: Swift.max(count, 1) * 4) }
}

/// Keeps freed large buffers for reuse, by exact size.
///
/// A training or attack step allocates the same activation and gradient sizes every step.
/// Buffers above the C allocator's mmap threshold (32 MiB at most in glibc, which ResNet
/// activations at batch 128 exceed) would otherwise be unmapped when freed and mapped again,
/// page-faulting on every first touch; reusing them makes the steady state allocation-free.
/// The pool holds at most `limit` bytes and only buffers of at least 64 KiB.
public final class BufferPool: @unchecked Sendable {
    public static let shared = BufferPool()

    private let lock = NSLock()
    private var free: [Int: [UnsafeMutableRawPointer]] = [:]
    private var pooledBytes = 0
    /// Most bytes kept for reuse (default 2 GiB).
    public var limit = 2 << 30
    private static let smallest = 64 << 10

    /// Bytes currently held for reuse.
    public var heldBytes: Int {
        lock.lock()
        defer { lock.unlock() }
        return pooledBytes
    }

    func take(bytes: Int) -> UnsafeMutableRawPointer {
        if bytes >= BufferPool.smallest && Optimizations.isEnabled(.pool) {
            lock.lock()
            if let p = free[bytes]?.popLast() {
                pooledBytes -= bytes
                lock.unlock()
                return p
            }
            lock.unlock()
        }
        return UnsafeMutableRawPointer.allocate(byteCount: bytes, alignment: 64)
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
        pointer.deallocate()
    }

    /// Returns every held buffer to the system.
    public func drain() {
        lock.lock()
        let all = free
        free = [:]
        pooledBytes = 0
        lock.unlock()
        for (_, pointers) in all { for p in pointers { p.deallocate() } }
    }
}

extension Tensor: CustomStringConvertible {
    public var description: String {
        let head = scalars.prefix(8).map { String(format: "%.5g", $0) }.joined(separator: ", ")
        return "Tensor(\(shape): [\(head)\(count > 8 ? ", ..." : "")])"
    }
}
