import Dispatch

/// Where pathod's connection tasks run: dispatch threads of its own instead of Swift's shared
/// cooperative pool, which has one thread per core. A process that blocks its cooperative threads (a
/// test suite waiting on subprocesses, say) must not stall the pathod its tests talk to.
final class PathodExecutor: TaskExecutor {
    static let shared = PathodExecutor()

    private let queue = DispatchQueue(label: "pathod.connections", attributes: .concurrent)

    func enqueue(_ job: consuming ExecutorJob) {
        let job = UnownedJob(job)
        let executor = asUnownedTaskExecutor()
        queue.async { job.runSynchronously(on: executor) }
    }
}
