import Dispatch
import Foundation
import Synchronization
import Testing

@testable import MitmCertificates

/// De-duplication with the first signing held open until the test lets it finish, so the overlap the
/// tests need is certain rather than likely. A held signing blocks one cooperative thread, so the suite
/// is serialized and needs a second thread to make progress.
@Suite(
    "In-flight signing",
    .serialized,
    .timeLimit(.minutes(1)),
    .enabled(if: ProcessInfo.processInfo.activeProcessorCount >= 2, "a held signing blocks the only cooperative thread")
)
struct InFlightSigningTests {
    /// Holds the first signing until ``release()``; later signings pass straight through.
    final class Gate: Sendable {
        private let calls = Mutex(0)
        private let semaphore = DispatchSemaphore(value: 0)

        func passOrWait() {
            let call = self.calls.withLock { calls -> Int in
                calls += 1
                return calls
            }
            if call == 1 {
                self.semaphore.wait()
            }
        }

        func release() {
            self.semaphore.signal()
        }
    }

    private func gatedStore(_ gate: Gate) -> MitmCertificates.CertificateStore {
        let authority = Fixtures.authority
        return MitmCertificates.CertificateStore(authority: authority, capacity: 10) { request in
            gate.passOrWait()
            return try authority.signLeaf(for: request)
        }
    }

    /// Polls until `condition` holds; records an issue after about ten seconds.
    private func eventually(_ what: String, _ condition: () -> Bool) async throws {
        for _ in 0..<2000 where !condition() {
            try await Task.sleep(for: .milliseconds(5))
        }
        #expect(condition(), "timed out waiting until \(what)")
    }

    @Test("callers arriving during a signing wait for it and share its certificate")
    func waitersShareOneSigning() async throws {
        let gate = Gate()
        let store = self.gatedStore(gate)
        let request = LeafRequest.host("slow.example")
        let leaves = try await withThrowingTaskGroup(of: [UInt8].self) { group in
            group.addTask { try await store.leaf(for: request).certificateDER }
            try await self.eventually("the first caller signs") { store.isSigning(request) }
            for _ in 0..<19 {
                group.addTask { try await store.leaf(for: request).certificateDER }
            }
            try await self.eventually("19 callers wait") { store.joinedSigningCount == 19 }
            gate.release()
            return try await group.reduce(into: []) { $0.append($1) }
        }
        #expect(leaves.count == 20)
        #expect(Set(leaves).count == 1)
        #expect(store.signedLeafCount == 1)
        #expect(store.joinedSigningCount == 19)
        #expect(store.cachedLeaf(for: request)?.certificateDER == leaves[0])
    }

    @Test("a synchronous caller during an async signing signs its own copy; every caller gets the cached one")
    func synchronousCallerDuringSigning() async throws {
        let gate = Gate()
        let store = self.gatedStore(gate)
        let request = LeafRequest.host("mixed.example")
        let asyncLeaf = Task { try await store.leaf(for: request) }
        try await self.eventually("the async caller signs") { store.isSigning(request) }

        // leafNow can't wait, so it signs (ungated) and caches first.
        let syncLeaf = try store.leafNow(for: request)
        #expect(store.cachedLeaf(for: request)?.certificateDER == syncLeaf.certificateDER)

        gate.release()
        let late = try await asyncLeaf.value
        #expect(store.signedLeafCount == 2)
        // The late finisher was handed the cached certificate instead of its own.
        #expect(late.certificateDER == syncLeaf.certificateDER)
        #expect(store.cachedLeaf(for: request)?.certificateDER == syncLeaf.certificateDER)
    }
}
