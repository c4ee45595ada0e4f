import PARTData
import PARTEngine
import PARTNN
import PARTTraining

/// Images whose class is the bright quadrant, and a SmallCNN trained cleanly on them: accurate,
/// robust to small budgets and breakable by larger ones, which is what the attack, evaluation
/// and distributed tests need of a model.
public enum QuadrantImages {
    /// `count` 20x20 one-channel images; image i is labelled i % 4, the index of its bright
    /// quadrant (top-left, top-right, bottom-left, bottom-right), of `classes` classes. The bright
    /// quadrant's pixels are 150-209, the rest 50-109 (noise from a fixed seed).
    public static func dataset(count: Int, classes: Int) throws -> ImageDataset {
        var rng = RNG(seed: 5)
        var pixels = [UInt8](), labels = [Int32]()
        for i in 0..<count {
            let label = i % 4
            for r in 0..<20 {
                for c in 0..<20 {
                    let quadrant = (r < 10 ? 0 : 2) + (c < 10 ? 0 : 1)
                    pixels.append(UInt8((quadrant == label ? 150 : 50) + Int(rng.uniform() * 60)))
                }
            }
            labels.append(Int32(label))
        }
        return try ImageDataset(name: "quadrants", images: pixels, labels: labels, height: 20, width: 20, channels: 1,
                                classes: classes)
    }

    /// A SmallCNN with `data`'s classes trained on `data` with plain cross-entropy (SGD with
    /// momentum 0.9, shuffled batches; initialisation and order from a fixed seed).
    public static func trainedSmallCNN(on data: ImageDataset, learningRate: Float, epochs: Int,
                                       batchSize: Int) throws -> ImageClassifier {
        var rng = RNG(seed: 8)
        return try trainSmallCNN(on: data, learningRate: learningRate, epochs: epochs, batchSize: batchSize, rng: &rng)
    }
}

/// A SmallCNN with `data`'s classes and shape, trained on its first `examples` images (all by
/// default) with plain cross-entropy: SGD with momentum 0.9, shuffled batches; the
/// initialisation and the order are drawn from `rng`.
public func trainSmallCNN(on data: ImageDataset, examples: Int? = nil, learningRate: Float, epochs: Int, batchSize: Int,
                          rng: inout RNG) throws -> ImageClassifier {
    let model = try ModelZoo.make("small-cnn", numClasses: data.classes, inChannels: data.channels, imageSize: data.height,
                                  rng: &rng)
    let sgd = SGD(parameters: model.parameters, learningRate: learningRate, momentum: 0.9)
    for _ in 0..<epochs {
        for indices in BatchSampler(count: examples ?? data.count, batchSize: batchSize, shuffle: true, rng: &rng) {
            let (x, y) = data.batch(indices)
            sgd.zeroGradients()
            let tape = Tape(parameterGradients: true, inputGradient: false)
            let (_, g) = CrossEntropy.forwardBackward(logits: try model.forward(x, mode: .train, tape: tape), labels: y)
            try tape.backward(g)
            sgd.step()
        }
    }
    return model
}
