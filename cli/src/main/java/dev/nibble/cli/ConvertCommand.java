package dev.nibble.cli;

import dev.nibble.converter.ConsoleProgress;
import dev.nibble.converter.ConvertOptions;
import dev.nibble.converter.Converter;
import dev.nibble.converter.Recipe;
import dev.nibble.formats.GgmlType;
import dev.nibble.formats.gguf.GgufTensorInfo;
import java.nio.file.Path;
import java.util.EnumMap;
import java.util.Map;
import java.util.concurrent.Callable;
import picocli.CommandLine.Command;
import picocli.CommandLine.Model.CommandSpec;
import picocli.CommandLine.ITypeConverter;
import picocli.CommandLine.Option;
import picocli.CommandLine.Parameters;
import picocli.CommandLine.Spec;
import picocli.CommandLine.TypeConversionException;

/** {@code nibble convert}: a Hugging Face Llama folder to one GGUF file. */
@Command(name = "convert", mixinStandardHelpOptions = true,
        description = {"Converts a Hugging Face Llama/Mistral checkpoint (safetensors or PyTorch .bin, sharded or not)"
                + " into one GGUF file that nibble and llama.cpp run.",
            "The output is written to a new temporary file beside OUT and renamed to OUT when complete, so OUT is never"
                + " half written; memory stays bounded whatever the model size."})
final class ConvertCommand implements Callable<Integer> {

    @Spec
    CommandSpec spec;

    @Parameters(index = "0", paramLabel = "MODEL_DIR",
            description = "Folder with config.json, the weights and the tokenizer files.")
    Path modelDir;

    @Option(names = {"-o", "--output"}, required = true, paramLabel = "OUT.gguf", description = "The GGUF file to write.")
    Path output;

    @Option(names = "--type", defaultValue = "q4_k_m", converter = RecipeConverter.class, paramLabel = "TYPE",
            description = "q4_k_m (default), q4_0, q8_0, f16, bf16, f32, iq4_nl or nf4 (nibble only).")
    Recipe recipe;

    @Option(names = "--threads", paramLabel = "N", description = "Quantizing workers (default: all processors).")
    Integer threads;

    @Option(names = "--name", paramLabel = "NAME", description = "general.name in the file (default: the folder's name).")
    String name;

    @Option(names = "--force", description = "Overwrite OUT.gguf if it exists (only a regular file that is not one of"
            + " the model's own files).")
    boolean force;

    @Option(names = "--allow-external-links", description = "Read files of MODEL_DIR that are symbolic links to places"
            + " outside it (refused by default: their content would end up in the model). Links into the Hugging Face"
            + " cache's blobs folder are always read.")
    boolean allowExternalLinks;

    @Override
    public Integer call() throws Exception {
        ConvertOptions options = ConvertOptions.of(modelDir, output, recipe)
                .withForce(force)
                .withAllowExternalLinks(allowExternalLinks)
                .withProgress(ConsoleProgress.onStderr());
        if (threads != null) {
            options = options.withThreads(threads);
        }
        if (name != null) {
            options = options.withName(name);
        }
        Converter.Result result = Converter.convert(options);
        Map<GgmlType, Integer> counts = new EnumMap<>(GgmlType.class);
        for (GgufTensorInfo t : result.tensors()) {
            counts.merge(t.type(), 1, Integer::sum);
        }
        spec.commandLine().getOut().printf("wrote %s: %d tensors %s, %s of tensor data%n", result.output(), result.tensors().size(),
                counts, ConsoleProgress.size(result.tensorBytes()));
        return 0;
    }

    /** Parses {@code --type} through {@link Recipe#fromCliName}, whose message lists the choices. */
    static final class RecipeConverter implements ITypeConverter<Recipe> {
        @Override
        public Recipe convert(String value) {
            try {
                return Recipe.fromCliName(value);
            } catch (IllegalArgumentException e) {
                throw new TypeConversionException(e.getMessage());
            }
        }
    }
}
