import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// The time the alert layer's timers run on (resends, heartbeats, blink, lamp test, ready pulse), in seconds
/// from an arbitrary origin. Tests drive a `ManualClock`; the appliance uses `MonotonicClock`.
public protocol AlertClock: Sendable {
    func now() -> Double
}

/// CLOCK_MONOTONIC: unaffected by wall-clock steps (NTP, a technician setting the date).
public struct MonotonicClock: AlertClock {
    public init() {}
    public func now() -> Double { monotonicSeconds() }
}

/// A clock that moves only when told to.
public final class ManualClock: AlertClock, @unchecked Sendable {
    private let lock = NSLock()
    private var t: Double

    public init(start: Double = 1000) { t = start }

    public func now() -> Double { lock.withLock { t } }

    public func advance(by seconds: Double) { lock.withLock { t += seconds } }
}
