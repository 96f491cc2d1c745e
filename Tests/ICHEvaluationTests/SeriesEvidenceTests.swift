import Foundation
import ICHDecision
import ICHEngine
import Testing

@Suite struct SeriesEvidenceTests {
    static func score(_ any: Float) -> SliceScore {
        SliceScore(classNames: ["any", "subdural"], logits: [], probabilities: [any, any / 2], thresholds: [0.5, 0.5], heatmaps: [])
    }

    static func evidence(_ k: Int) -> SeriesEvidence {
        SeriesEvidence(classNames: ["any", "subdural"], thresholds: [0.5, 0.5], adjacentSlices: k)
    }

    @Test func kAdjacentPositiveSlicesCompleteTheEvidenceAtTheSliceThatCompletesIt() {
        var e = Self.evidence(2)
        let r1 = e.add(Self.score(0.1), key: 0, instance: 1)
        #expect(!r1)
        let r2 = e.add(Self.score(0.9), key: 5, instance: 2)
        #expect(!r2, "one positive slice is not enough for k = 2")
        #expect(!e.isUrgent)
        let r3 = e.add(Self.score(0.7), key: 10, instance: 3)
        #expect(r3, "the second adjacent positive completes it")
        #expect(e.isUrgent && e.completedBy?.instance == 3)
        let r4 = e.add(Self.score(0.95), key: 15, instance: 4)
        #expect(!r4, "completed once only")
        #expect(e.finding.slicesScored == 4 && e.finding.maxProbabilities[0] == 0.95)
    }

    @Test func isolatedPositivesDoNotAlarmButOutOfOrderArrivalsJoin() {
        var e = Self.evidence(2)
        // Positives at 0 and 10 mm with a negative at 5 between: not adjacent.
        _ = e.add(Self.score(0.9), key: 0, instance: 1)
        _ = e.add(Self.score(0.2), key: 5, instance: 2)
        let r5 = e.add(Self.score(0.9), key: 10, instance: 3)
        #expect(!r5)
        // Slices arriving out of order: 25 then 20 are neighbours once the spacing (5 mm) is known.
        let r6 = e.add(Self.score(0.8), key: 25, instance: 6)
        #expect(!r6)
        let r7 = e.add(Self.score(0.8), key: 20, instance: 5)
        #expect(r7, "20 and 25 are adjacent")
        #expect(e.completedBy?.key == 20)
    }

    @Test func aGapLeftByAMissingSliceDoesNotJoinDistantSlices() {
        var e = Self.evidence(2)
        _ = e.add(Self.score(0.1), key: 0, instance: 1)
        _ = e.add(Self.score(0.1), key: 5, instance: 2)
        _ = e.add(Self.score(0.9), key: 10, instance: 3)
        let r8 = e.add(Self.score(0.9), key: 30, instance: 7)
        #expect(!r8, "neighbours in the order, but 20 mm apart at 5 mm spacing")
        let r9 = e.add(Self.score(0.9), key: 15, instance: 4)
        #expect(r9)
    }

    @Test func skippedSlicesKeepTheirPlaceAndKOneAlarmsOnTheFirstPositive() {
        var e = Self.evidence(2)
        _ = e.add(Self.score(0.9), key: 0, instance: 1)
        e.addSkipped(key: 5, instance: 2)
        let r10 = e.add(Self.score(0.9), key: 10, instance: 3)
        #expect(!r10, "a skipped slice between breaks the run")
        #expect(e.skipped == 1 && e.finding.slicesScored == 2)
        var one = Self.evidence(1)
        let r11 = one.add(Self.score(0.4), key: 0, instance: 1)
        #expect(!r11)
        let r12 = one.add(Self.score(0.5), key: 5, instance: 2)
        #expect(r12, "at the threshold counts, k = 1 needs one slice")
    }

    @Test func keysPreferPositionThenInstanceNumber() {
        #expect(SeriesEvidence.key(position: -12.5, instance: 3, arrival: 0) == -12.5)
        #expect(SeriesEvidence.key(position: nil, instance: 3, arrival: 0) == 3)
        #expect(SeriesEvidence.key(position: nil, instance: nil, arrival: 2) > 1000)
    }
}
