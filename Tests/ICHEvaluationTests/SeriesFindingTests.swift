import Foundation
import ICHDecision
import ICHEngine
import Testing

@Suite struct SeriesFindingTests {
    static func score(_ p: [Float]) -> SliceScore {
        SliceScore(classNames: ["any", "subdural"], logits: p.map { log($0 / (1 - $0)) }, probabilities: p,
                   thresholds: [0.3, 0.6], heatmaps: [])
    }

    @Test func aSeriesIsPositiveWhenOneSliceReachesTheThreshold() {
        var finding = SeriesFinding(classNames: ["any", "subdural"], thresholds: [0.3, 0.6])
        #expect(!finding.isUrgent && finding.positiveClasses.isEmpty, "no slice scored: nothing to alert on")
        finding.add(Self.score([0.1, 0.2]), slice: 4)
        finding.add(Self.score([0.29, 0.59]), slice: 5)
        #expect(!finding.isUrgent && finding.strongestSlice == [5, 5])
        finding.add(Self.score([0.3, 0.4]), slice: 6)
        #expect(finding.isUrgent, "at the threshold counts as positive, as in SliceScore.positives")
        #expect(finding.positiveClasses == ["any"])
        #expect(finding.maxProbabilities == [0.3, 0.59] && finding.strongestSlice == [6, 5])
        finding.add(Self.score([0.05, 0.05]), slice: 7)
        #expect(finding.slicesScored == 4 && finding.isUrgent && finding.strongestSlice == [6, 5])
    }

    @Test func withoutAnAnyClassTheFirstClassAlerts() {
        let finding = SeriesFinding(classNames: ["bleed", "other"], thresholds: [0.5, 0.5])
        #expect(finding.alertClass == 0)
        #expect(SeriesFinding(classNames: ["other", "any"], thresholds: [0.5, 0.5]).alertClass == 1)
    }
}
