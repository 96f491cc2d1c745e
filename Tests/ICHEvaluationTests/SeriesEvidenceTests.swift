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
        #expect(!e.add(Self.score(0.1), key: 0, instance: 1))
        #expect(!e.add(Self.score(0.9), key: 5, instance: 2), "one positive slice is not enough for k = 2")
        #expect(!e.isUrgent)
        #expect(e.add(Self.score(0.7), key: 10, instance: 3), "the second adjacent positive completes it")
        #expect(e.isUrgent && e.completedBy?.instance == 3)
        #expect(!e.add(Self.score(0.95), key: 15, instance: 4), "completed once only")
        #expect(e.finding.slicesScored == 4 && e.finding.maxProbabilities[0] == 0.95)
    }

    @Test func isolatedPositivesDoNotAlarmButOutOfOrderArrivalsJoin() {
        var e = Self.evidence(2)
        // Positives at 0 and 10 mm with a negative at 5 between: not adjacent.
        _ = e.add(Self.score(0.9), key: 0, instance: 1)
        _ = e.add(Self.score(0.2), key: 5, instance: 2)
        #expect(!e.add(Self.score(0.9), key: 10, instance: 3))
        // Slices arriving out of order: 25 then 20 are neighbours once the spacing (5 mm) is known.
        #expect(!e.add(Self.score(0.8), key: 25, instance: 6))
        #expect(e.add(Self.score(0.8), key: 20, instance: 5), "20 and 25 are adjacent")
        #expect(e.completedBy?.key == 20)
    }

    @Test func aGapLeftByAMissingSliceDoesNotJoinDistantSlices() {
        var e = Self.evidence(2)
        _ = e.add(Self.score(0.1), key: 0, instance: 1)
        _ = e.add(Self.score(0.1), key: 5, instance: 2)
        _ = e.add(Self.score(0.9), key: 10, instance: 3)
        #expect(!e.add(Self.score(0.9), key: 30, instance: 7), "neighbours in the order, but 20 mm apart at 5 mm spacing")
        #expect(e.add(Self.score(0.9), key: 15, instance: 4))
    }

    @Test func skippedSlicesKeepTheirPlaceAndKOneAlarmsOnTheFirstPositive() {
        var e = Self.evidence(2)
        _ = e.add(Self.score(0.9), key: 0, instance: 1)
        e.addSkipped(key: 5, instance: 2)
        #expect(!e.add(Self.score(0.9), key: 10, instance: 3), "a skipped slice between breaks the run")
        #expect(e.skipped == 1 && e.finding.slicesScored == 2)
        var one = Self.evidence(1)
        #expect(!one.add(Self.score(0.4), key: 0, instance: 1))
        #expect(one.add(Self.score(0.5), key: 5, instance: 2), "at the threshold counts, k = 1 needs one slice")
    }

    @Test func keysPreferPositionThenInstanceNumber() {
        #expect(SeriesEvidence.key(position: -12.5, instance: 3, arrival: 0) == -12.5)
        #expect(SeriesEvidence.key(position: nil, instance: 3, arrival: 0) == 3)
        #expect(SeriesEvidence.key(position: nil, instance: nil, arrival: 2) > 1000)
    }
}
