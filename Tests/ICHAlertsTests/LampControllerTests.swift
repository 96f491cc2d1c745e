import Foundation
import ICHAlerts
import Testing

@Suite struct LampControllerTests {
    static let board = LampSettings(backend: "sim", chip: "sim", alertLine: 1, readyLine: 2, buzzerLine: 3, buttonLine: 4,
                                    activeLow: false, buttonDebounceMs: 50, readyStaleSeconds: 5)

    final class Fixture {
        let clock = ManualClock(start: 100)
        let console = Recorder<String>()
        let presses = Recorder<Int>()
        let chip: SimulatedGPIOChip
        let lamp: LampController

        init(_ settings: LampSettings = LampControllerTests.board) throws {
            let console = console
            chip = SimulatedGPIOChip(lineCount: 8, sink: { console.append($0) })
            let presses = presses
            lamp = try LampController(settings: settings, chip: chip, clock: clock, logger: quietLogger) { presses.append(1) }
        }

        func at(_ seconds: Double) {
            clock.advance(by: seconds)
            lamp.tick()
        }

        var alertLamp: Bool? { chip.level(1) }
    }

    @Test func theStateRule() {
        #expect(LampController.state(pending: 0, health: .ok, testing: false) == .off)
        #expect(LampController.state(pending: 1, health: .ok, testing: false) == .on)
        #expect(LampController.state(pending: 2, health: .fault, testing: false) == .on)
        #expect(LampController.state(pending: 0, health: .fault, testing: false) == .blink)
        #expect(LampController.state(pending: 0, health: .degraded, testing: false) == .blink)
        #expect(LampController.state(pending: 0, health: .ok, testing: true) == .on)
    }

    @Test func everyTransitionOnTheSimulatedChip() throws {
        let f = try Fixture()
        #expect(f.alertLamp == false)
        #expect(f.lamp.state == .off)

        // Lamp test: every output lit for one second, then back.
        f.lamp.startLampTest()
        #expect(f.lamp.state == .on)
        #expect(f.chip.level(1) == true && f.chip.level(2) == true && f.chip.level(3) == true)
        f.at(0.99)
        #expect(f.alertLamp == true)
        f.at(0.02)
        #expect(f.lamp.state == .off)
        #expect(f.chip.level(1) == false && f.chip.level(2) == false && f.chip.level(3) == false)

        // An alert: ON steady, the buzzer 0.5 s in every 2 s.
        f.lamp.update(pending: 1, health: .ok)
        #expect(f.lamp.state == .on)
        #expect(f.alertLamp == true)
        #expect(f.chip.level(3) == true)
        f.at(0.6)
        #expect(f.alertLamp == true)
        #expect(f.chip.level(3) == false)
        f.at(1.5)
        #expect(f.chip.level(3) == true)
        f.at(10)
        #expect(f.alertLamp == true)

        // A fault while an alert is pending changes nothing: the alert wins.
        f.lamp.update(pending: 1, health: .fault)
        #expect(f.lamp.state == .on)

        // Acknowledged with the fault still there: slow blink, starting lit, 1 s on and 1 s off.
        f.lamp.update(pending: 0, health: .fault)
        #expect(f.lamp.state == .blink)
        #expect(f.alertLamp == true)
        #expect(f.chip.level(3) == false)
        f.at(0.9)
        #expect(f.alertLamp == true)
        f.at(0.2)
        #expect(f.alertLamp == false)
        f.at(1.0)
        #expect(f.alertLamp == true)

        // Degraded blinks too; OK is dark.
        f.lamp.update(pending: 0, health: .degraded)
        #expect(f.lamp.state == .blink)
        f.lamp.update(pending: 0, health: .ok)
        #expect(f.lamp.state == .off)
        #expect(f.alertLamp == false)

        let lampLines = f.console.all.filter { $0.hasPrefix("lamp:") }
        #expect(lampLines == ["lamp: OFF", "lamp: ON", "lamp: OFF", "lamp: ON", "lamp: OFF", "lamp: ON", "lamp: OFF"])
    }

    @Test func activeLowInvertsEveryPhysicalLevel() throws {
        var settings = Self.board
        settings.activeLow = true
        let f = try Fixture(settings)
        #expect(f.chip.history[1] == [true])  // off = high on an active-low line
        f.lamp.update(pending: 1, health: .ok)
        #expect(f.chip.level(1) == false)
        #expect(f.chip.level(3) == false)
        #expect(f.console.all.contains("lamp: ON"))
        f.lamp.stop()
        #expect(f.chip.level(1) == true)
        #expect(f.chip.level(3) == true)
        #expect(f.chip.level(2) == true)
    }

    @Test func theReadyLampPulsesOnlyWhileTheScoringLoopIsAlive() throws {
        let f = try Fixture()
        f.at(2)
        #expect(f.chip.history[2] == [false])  // never alive yet: dark
        #expect(!f.lamp.readyPulsing)
        var levels: [Bool] = []
        for _ in 0..<12 {  // six seconds of a healthy loop beating every 0.5 s
            f.lamp.scoringLoopAlive()
            levels.append(f.chip.level(2)!)
            f.at(0.5)
        }
        #expect(f.lamp.readyPulsing)
        #expect(levels == [true, false, true, false, true, false, true, false, true, false, true, false])
        // The loop stalls: the lamp keeps pulsing until 5 s without a beat, then goes dark and stays dark.
        let writesBefore = f.chip.history[2]!.count
        for _ in 0..<8 { f.at(0.5) }
        #expect(f.lamp.readyPulsing)
        #expect(f.chip.history[2]!.count > writesBefore)
        f.at(0.6)
        #expect(!f.lamp.readyPulsing)
        #expect(f.chip.level(2) == false)
        let dark = f.chip.history[2]!.count
        for _ in 0..<20 { f.at(0.5) }
        #expect(f.chip.history[2]!.count == dark)
        // Alive again: pulsing again, starting lit.
        f.lamp.scoringLoopAlive()
        #expect(f.chip.level(2) == true)
    }

    @Test func buttonDebounceJudgedOnEventTimestamps() throws {
        let f = try Fixture()
        // A press bouncing for 3 ms, held 80 ms, bouncing again on release.
        for (t, level) in [(10.000, true), (10.001, false), (10.003, true), (10.080, false), (10.081, true), (10.083, false)] {
            f.chip.driveInput(4, to: level, at: t)
        }
        try f.lamp.pumpButton(timeout: 0)
        #expect(f.presses.count == 1)
        // A second press well after: counted.
        f.chip.press(4, at: 11)
        try f.lamp.pumpButton(timeout: 0)
        #expect(f.presses.count == 2)
        // A press 20 ms after the last release edge is within the debounce window: bounce.
        f.chip.driveInput(4, to: true, at: 11.1)
        try f.lamp.pumpButton(timeout: 0)
        #expect(f.presses.count == 2)
        f.chip.driveInput(4, to: false, at: 11.2)
        f.chip.driveInput(4, to: true, at: 11.4)
        try f.lamp.pumpButton(timeout: 0)
        #expect(f.presses.count == 3)
        #expect(f.lamp.presses == 3)
    }

    @Test func anActiveLowButtonPressesWhenPulledLow() throws {
        var settings = Self.board
        settings.activeLow = true
        let f = try Fixture(settings)
        f.chip.driveInput(4, to: true, at: 1)  // resting high: no edge
        try f.lamp.pumpButton(timeout: 0)
        #expect(f.presses.count == 0)
        f.chip.driveInput(4, to: false, at: 2)  // pulled to ground: the press
        try f.lamp.pumpButton(timeout: 0)
        #expect(f.presses.count == 1)
        f.chip.driveInput(4, to: true, at: 2.2)  // released
        try f.lamp.pumpButton(timeout: 0)
        #expect(f.presses.count == 1)
    }

    @Test func stopDrivesEveryLineOffAndReleasesIt() throws {
        let f = try Fixture()
        f.lamp.update(pending: 1, health: .ok)
        f.lamp.scoringLoopAlive()
        #expect(f.chip.level(1) == true && f.chip.level(2) == true)
        f.lamp.stop()
        #expect(f.chip.level(1) == false && f.chip.level(2) == false && f.chip.level(3) == false)
        for line: UInt32 in 1...4 { #expect(!f.chip.isRequested(line)) }
        // Nothing moves after stop.
        f.lamp.update(pending: 2, health: .fault)
        f.at(3)
        #expect(f.chip.level(1) == false)
    }

    @Test func aBusyLineIsAGPIOError() throws {
        let chip = SimulatedGPIOChip(lineCount: 8)
        let holder = try chip.requestOutput(offset: 1, consumer: "other", initial: false)
        #expect(throws: GPIOError.self) {
            _ = try LampController(settings: Self.board, chip: chip, clock: ManualClock(), logger: quietLogger) {}
        }
        _ = holder
    }
}
