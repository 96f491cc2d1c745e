@testable import ICHEvaluation
import Testing

@Suite struct ROCPlotTests {
    static func report(_ classes: [EvaluationReport.ClassFigures]) -> EvaluationReport {
        EvaluationReport(model: "m", engine: "int8", files: 4, slicesScored: 4, slicesLabelled: 4, slicesUnlabelled: 0,
                         slicesSkipped: 0, rejected: [:], labelsWithoutSlice: 0, duplicateLabelRows: 0, malformedLabelRows: 0,
                         classes: classes, weightedLogLoss: nil, series: nil, seriesCount: 0, reference: nil)
    }

    @Test func curvesAndOperatingPointsLandWhereTheFiguresSay() {
        let scores = [0.9, 0.5, 0.4, 0.1], labels = [true, false, true, false]
        let rates = Metrics.rates(scores: scores, labels: labels, threshold: 0.45)  // sensitivity 0.5, specificity 0.5
        let figures = EvaluationReport.ClassFigures(name: "any", auc: Metrics.auc(scores: scores, labels: labels), threshold: 0.45,
                                                    positives: 2, negatives: 2, atThreshold: rates,
                                                    roc: Metrics.roc(scores: scores, labels: labels))
        let oneClass = EvaluationReport.ClassFigures(name: "epidural", auc: nil, threshold: 0.5, positives: 0, negatives: 4,
                                                     atThreshold: Metrics.rates(scores: scores, labels: [false, false, false, false], threshold: 0.5), roc: nil)
        let image = ROCPlot.render(Self.report([figures, oneClass]), title: "test")
        #expect(image.width == 760 && image.height == 560 && image.channels == 3)
        func pixel(_ x: Int, _ y: Int) -> [UInt8] { Array(image.pixels[((y * image.width + x) * 3)..<((y * image.width + x) * 3 + 3)]) }
        let left = 70, top = 50, side = 440
        // The "any" curve (black) runs up the left edge to (0, 0.5), then right along sensitivity 0.5.
        #expect(pixel(left + side / 4, top + side / 2) == [0, 0, 0])
        // Its operating point: false-positive rate 0.5, sensitivity 0.5, a 9x9 square centred there.
        #expect(pixel(left + side / 2 + 3, top + side / 2 - 3) == [0, 0, 0])
        // The chance diagonal, away from the curves, is grey; the area above the curve is white.
        #expect(pixel(left + 3 * side / 4, top + side / 4) == [170, 170, 170])
        #expect(pixel(left + side / 8, top + side / 8) == [255, 255, 255])
        // Legend swatches in each class's colour.
        #expect(pixel(left + side + 30, top + 5) == [0, 0, 0])
        #expect(pixel(left + side + 30, top + 35) == [213, 94, 0])
    }

    @Test func fixedDecimals() {
        #expect(ROCPlot.fixed(0.9567, digits: 3) == "0.957")
        #expect(ROCPlot.fixed(1, digits: 2) == "1.00")
        #expect(ROCPlot.fixed(0.05, digits: 2) == "0.05")
    }
}
