package dev.nibble.cli.inspect;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.SerializationFeature;
import dev.nibble.cli.InputFiles;
import java.io.IOException;
import java.io.PrintWriter;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.util.concurrent.Callable;
import picocli.CommandLine.Command;
import picocli.CommandLine.Model.CommandSpec;
import picocli.CommandLine.Option;
import picocli.CommandLine.Parameters;
import picocli.CommandLine.Spec;

/** {@code nibble inspect}: metadata and tensor table of a GGUF file or a Hugging Face checkpoint, from headers only. */
@Command(name = "inspect", mixinStandardHelpOptions = true,
        description = {"Shows a model's metadata and tensors (name, type, shape, size) with totals.",
            "FILE is a .gguf file, a .safetensors or PyTorch .bin file (or their .index.json), or a Hugging Face model folder.",
            "Only headers are read: inspecting a 40 GB file takes milliseconds."})
public final class InspectCommand implements Callable<Integer> {

    @Parameters(index = "0", paramLabel = "FILE", description = "Model file or folder.")
    Path path;

    @Option(names = "--json", description = "Print one JSON document (all metadata values in full) for scripts.")
    boolean json;

    @Option(names = "--no-tensors", description = "Leave out the per-tensor table.")
    boolean noTensors;

    @Spec
    CommandSpec spec;

    @Override
    public Integer call() throws IOException {
        Inspection inspection = inspect(path);
        PrintWriter out = spec.commandLine().getOut();
        if (json) {
            ObjectMapper mapper = new ObjectMapper().enable(SerializationFeature.INDENT_OUTPUT);
            out.println(mapper.writeValueAsString(inspection.toJson()));
        } else {
            InspectionPrinter.print(inspection, out, !noTensors);
        }
        out.flush();
        return 0;
    }

    /** Picks the reader from the file's name or, for a folder, from what the folder holds. */
    static Inspection inspect(Path path) throws IOException {
        if (!Files.exists(path)) {
            throw new NoSuchFileException(path.toString(), null, "no such file or folder");
        }
        if (!Files.isDirectory(path)) {
            // a FIFO would block the open, a device never end: refused before opening
            InputFiles.regularFile(path, "inspect", "a model file or folder");
        }
        if (Files.isRegularFile(path) && path.getFileName().toString().endsWith(".gguf")) {
            return GgufInspector.inspect(path);
        }
        return CheckpointInspector.inspect(path);
    }
}
