import Glibc
import ICHAlerts
import Testing

@Suite struct GPIOTests {
    /// The real libgpiod backend is linked and called; these machines have no GPIO chip, so it must fail
    /// cleanly with the kernel's reason rather than crash.
    @Test func libgpiodReportsAMissingChip() {
        do {
            _ = try LibgpiodChip(lookup: "ichd-no-such-chip")
            Issue.record("opened a chip that does not exist")
        } catch {
            #expect(error.code == ENOENT)
            #expect(error.description.contains("ichd-no-such-chip"))
        }
    }

    @Test func simulatedChipRecordsLevelsAndRefusesWhatTheKernelWould() throws {
        let chip = SimulatedGPIOChip(lineCount: 4)
        var lamp: (any GPIOOutputLine)? = try chip.requestOutput(offset: 2, consumer: "ichd-lamp", initial: false)
        try lamp?.set(true)
        try lamp?.set(false)
        #expect(chip.history[2] == [false, true, false])
        #expect(throws: GPIOError.self) { _ = try chip.requestOutput(offset: 2, consumer: "other", initial: false) }
        #expect(throws: GPIOError.self) { _ = try chip.requestOutput(offset: 9, consumer: "other", initial: false) }
        lamp = nil
        _ = try chip.requestOutput(offset: 2, consumer: "again", initial: true)
        #expect(chip.level(2) == true)
    }
}
