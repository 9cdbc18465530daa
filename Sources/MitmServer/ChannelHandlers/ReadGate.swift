/// Holds back `read()` while a handler must not take more (its peer cannot write, a hook is
/// running), and lets the one held-back read through when reading resumes: the backpressure half
/// that every relaying handler shares.
///
/// It only keeps the books; the handler issues `context.read()` itself. (Issuing it from inside a
/// mutating method would be re-entered by the read's own events and break exclusive access.)
struct ReadGate {
    private(set) var isPaused = false
    private var pendingRead = false

    /// For the handler's `read(context:)`: whether to pass the read on now (else it is held).
    mutating func admitRead() -> Bool {
        if isPaused {
            pendingRead = true
            return false
        }
        return true
    }

    /// Pauses or resumes reading; returns whether a held-back read must be issued now.
    mutating func setPaused(_ paused: Bool) -> Bool {
        isPaused = paused
        guard !paused, pendingRead else { return false }
        pendingRead = false
        return true
    }
}
