import Foundation
import PARTAttacks
import PARTData
import PARTEngine
import PARTEvaluation
import PARTNN

extension Eval {
    /// `--save-logits`: the model's logits of the clean test images, in the split's order, as an
    /// evaluation pass computes them (what scripts/check_onnx_roundtrip.py compares with
    /// onnxruntime's).
    func writeLogits(_ model: ImageClassifier, test: ImageDataset, to url: URL) throws {
        let file = try NPYFile.create(url, shape: [test.count, model.numClasses])
        var start = 0
        while start < test.count {
            let indices = Array(start..<min(start + batchSize, test.count))
            try file.write(try AttackPass.logits(model, test.batch(indices).images), at: indices.map { $0 })
            start += indices.count
        }
        try file.synchronize()
    }
}
