/// The engine's settings for one piece of work: the thread count, the precision of attack and
/// CAM passes, and the optimisations turned off (docs/architecture.md#engine-settings).
///
/// Each setting is a task-local value that a caller binds for a scope, never a process-wide
/// variable: `Engine.$attackPrecision.withValue(.bf16) { ... }`, `Engine.withThreads(1) { ... }`,
/// `Optimizations.without([.winograd]) { ... }`, or all at once with `bind`. Outside every scope
/// the defaults hold (all cores, f32, every optimisation on), so a test that binds a setting
/// cannot leak it into the next one.
///
/// Task-local values belong to the thread or task that binds them: the OpenMP and Dispatch
/// workers of `Parallel` do not see them, so kernels read their settings on the calling thread
/// before fanning out. A thread that runs engine code of its own (a batcher's prefetching
/// thread) takes a snapshot with `current` and binds it there.
public struct EngineSettings: Sendable, Equatable {
    public var threads: Int
    public var attackPrecision: DType
    public var disabled: Set<Optimizations.Name>

    public init(threads: Int, attackPrecision: DType, disabled: Set<Optimizations.Name>) {
        self.threads = threads
        self.attackPrecision = attackPrecision
        self.disabled = disabled
    }

    /// The settings in force on this thread or task.
    public static var current: EngineSettings {
        EngineSettings(threads: Engine.threads, attackPrecision: Engine.attackPrecision, disabled: Optimizations.disabled)
    }

    /// Runs `body` with these settings bound.
    public func bind<R>(_ body: () throws -> R) rethrows -> R {
        try Engine.withThreads(threads) {
            try Engine.$attackPrecision.withValue(attackPrecision) {
                try Optimizations.$disabled.withValue(disabled, operation: body)
            }
        }
    }
}
