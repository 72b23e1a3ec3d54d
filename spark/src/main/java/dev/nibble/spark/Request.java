package dev.nibble.spark;

import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.nibble.runtime.SamplerSettings;
import dev.nibble.runtime.chat.ChatMessage;
import java.io.Serializable;
import java.math.BigDecimal;
import java.util.ArrayList;
import java.util.List;
import org.apache.spark.sql.Row;
import org.apache.spark.sql.types.ArrayType;
import org.apache.spark.sql.types.ByteType;
import org.apache.spark.sql.types.DataType;
import org.apache.spark.sql.types.DataTypes;
import org.apache.spark.sql.types.IntegerType;
import org.apache.spark.sql.types.LongType;
import org.apache.spark.sql.types.NumericType;
import org.apache.spark.sql.types.ShortType;
import org.apache.spark.sql.types.StringType;
import org.apache.spark.sql.types.StructField;
import org.apache.spark.sql.types.StructType;

/**
 * One request of a batch, read from a typed {@link Row} with the fields of a {@code nibble batch} input line (nibble's
 * own form): {@code id}, {@code prompt} or {@code messages}, and the optional {@code max_tokens}, {@code temperature},
 * {@code top_k}, {@code top_p}, {@code min_p}, {@code repetition_penalty} (or {@code repeat_penalty}),
 * {@code frequency_penalty}, {@code presence_penalty}, {@code seed}, {@code stop}; with the same rules and the same
 * messages as {@code nibble batch} for what is wrong. A row whose JSON text Spark could not read into the schema
 * ({@code _corrupt_record}) is read from that text by the same rules.
 *
 * @param id        the request's id (a String, Integer or Long, as the id column's type), null when it has none
 * @param prompt    the text to continue, or null with messages
 * @param messages  the conversation to answer, or null with a prompt
 * @param maxTokens the token limit given, or null
 * @param sampling  the sampling fields given
 * @param stop      the stop strings given
 * @param error     why the request cannot run, or null
 */
record Request(Object id, String prompt, List<ChatMessage> messages, Integer maxTokens, Sampling sampling,
               List<String> stop, String error) {

    /** The column of Spark's JSON reader holding a line it could not read into the schema. */
    static final String CORRUPT = "_corrupt_record";

    /** The sampling fields of one request, each null when it gives none (the job's defaults then apply). */
    record Sampling(Float temperature, Integer topK, Float topP, Float minP, Float repeatPenalty,
                    Float frequencyPenalty, Float presencePenalty, Long seed) {

        static final Sampling NONE = new Sampling(null, null, null, null, null, null, null, null);

        /** These fields over {@code d}; an out-of-range value is an {@link IllegalArgumentException} naming it. */
        SamplerSettings over(SamplerSettings d) {
            return new SamplerSettings(temperature != null ? temperature : d.temperature(),
                    topK != null ? topK : d.topK(), topP != null ? topP : d.topP(), minP != null ? minP : d.minP(),
                    repeatPenalty != null ? repeatPenalty : d.repeatPenalty(),
                    frequencyPenalty != null ? frequencyPenalty : d.frequencyPenalty(),
                    presencePenalty != null ? presencePenalty : d.presencePenalty(), seed != null ? seed : d.seed());
        }
    }

    /** Why a request cannot run. */
    static final class Invalid extends Exception {
        Invalid(String message) {
            super(message, null, false, false);
        }
    }

    boolean chat() {
        return messages != null;
    }

    static Request invalid(Object id, String why) {
        return new Request(id, null, null, null, Sampling.NONE, List.of(), why);
    }

    /**
     * Where each field is in the rows of a schema (-1: absent), checked on the driver: a column of a type that cannot
     * hold its field is a mistake in the program, refused before anything runs.
     */
    record Columns(DataType idType, int id, int prompt, int messages, boolean messagesAsJson, int role, int content,
                   int maxTokens,
                   int temperature, int topK, int topP, int minP, int repetitionPenalty, int repeatPenalty,
                   int frequencyPenalty, int presencePenalty, int seed, int stop, boolean stopIsArray, int corrupt)
            implements Serializable {

        static Columns of(StructType schema) {
            int id = index(schema, "id");
            if (id < 0) {
                throw new IllegalArgumentException("the requests have no \"id\" column (a string or an integer); "
                        + "columns: " + String.join(", ", schema.fieldNames()));
            }
            DataType idType = schema.fields()[id].dataType();
            if (!(idType instanceof StringType || idType instanceof IntegerType || idType instanceof LongType)) {
                throw new IllegalArgumentException("the \"id\" column must be a string, int or bigint column, is "
                        + idType.simpleString());
            }
            int prompt = typed(schema, "prompt", t -> t instanceof StringType, "a string");
            int messages = typed(schema, "messages", t -> isMessages(t) || t instanceof StringType,
                    "an array of structs with string fields role and content, or a string of their JSON");
            boolean messagesAsJson = messages >= 0 && schema.fields()[messages].dataType() instanceof StringType;
            if (prompt < 0 && messages < 0) {
                throw new IllegalArgumentException("the requests have neither a \"prompt\" nor a \"messages\" column");
            }
            int role = -1;
            int content = -1;
            if (messages >= 0 && !messagesAsJson) {
                StructType message = (StructType) ((ArrayType) schema.fields()[messages].dataType()).elementType();
                role = message.fieldIndex("role");
                content = message.fieldIndex("content");
            }
            int stop = typed(schema, "stop", t -> t instanceof StringType
                    || t instanceof ArrayType a && a.elementType() instanceof StringType, "a string or an array of strings");
            return new Columns(idType, id, prompt, messages, messagesAsJson, role, content, integral(schema, "max_tokens"),
                    number(schema, "temperature"), integral(schema, "top_k"), number(schema, "top_p"),
                    number(schema, "min_p"), number(schema, "repetition_penalty"), number(schema, "repeat_penalty"),
                    number(schema, "frequency_penalty"), number(schema, "presence_penalty"), integral(schema, "seed"),
                    stop, stop >= 0 && schema.fields()[stop].dataType() instanceof ArrayType,
                    typed(schema, CORRUPT, t -> t instanceof StringType, "a string"));
        }

        private static boolean isMessages(DataType t) {
            return t instanceof ArrayType a && a.elementType() instanceof StructType s
                    && field(s, "role") instanceof StringType && field(s, "content") instanceof StringType;
        }

        private static DataType field(StructType s, String name) {
            int i = index(s, name);
            return i < 0 ? null : s.fields()[i].dataType();
        }

        private static int index(StructType schema, String name) {
            StructField[] fields = schema.fields();
            for (int i = 0; i < fields.length; i++) {
                if (fields[i].name().equals(name)) {
                    return i;
                }
            }
            return -1;
        }

        private static int integral(StructType schema, String name) {
            return typed(schema, name, t -> t instanceof IntegerType || t instanceof LongType || t instanceof ShortType
                    || t instanceof ByteType, "an integer");
        }

        private static int number(StructType schema, String name) {
            return typed(schema, name, t -> t instanceof NumericType, "a number");
        }

        private static int typed(StructType schema, String name, java.util.function.Predicate<DataType> ok,
                                 String what) {
            int i = index(schema, name);
            if (i >= 0 && !ok.test(schema.fields()[i].dataType())) {
                throw new IllegalArgumentException("the \"" + name + "\" column must be " + what + ", is "
                        + schema.fields()[i].dataType().simpleString());
            }
            return i;
        }
    }

    /** Reads {@code row}; never throws: what is wrong becomes the request's error. */
    static Request of(Row row, Columns c, ObjectMapper json) {
        Object id = row.isNullAt(c.id()) ? null : row.get(c.id());
        if (c.corrupt() >= 0 && !row.isNullAt(c.corrupt())) {
            return fromJson(row.getString(c.corrupt()), id, c.idType(), json);
        }
        try {
            if (id == null) {
                throw new Invalid("no \"id\" (a string or an integer) to name the result");
            }
            String prompt = c.prompt() < 0 || row.isNullAt(c.prompt()) ? null : row.getString(c.prompt());
            boolean hasMessages = c.messages() >= 0 && !row.isNullAt(c.messages());
            if ((prompt == null) == !hasMessages) {
                throw new Invalid("give exactly one of \"prompt\" and \"messages\"");
            }
            List<ChatMessage> conversation = null;
            if (hasMessages && c.messagesAsJson()) {
                JsonNode node;
                try {
                    node = json.readTree(row.getString(c.messages()));
                } catch (JsonProcessingException e) {
                    node = null;
                }
                conversation = messages(node == null ? json.nullNode() : node);
            } else if (hasMessages) {
                List<Row> messages = row.getList(c.messages());
                List<String[]> pairs = new ArrayList<>();
                for (Row m : messages) {
                    pairs.add(m == null ? new String[2] : new String[] {
                        m.isNullAt(c.role()) ? null : m.getString(c.role()),
                        m.isNullAt(c.content()) ? null : m.getString(c.content())});
                }
                conversation = conversation(pairs);
            }
            Float rp = number(row, c.repetitionPenalty());
            Sampling sampling = new Sampling(number(row, c.temperature()), integer(row, c.topK(), "top_k"),
                    number(row, c.topP()), number(row, c.minP()), rp != null ? rp : number(row, c.repeatPenalty()),
                    number(row, c.frequencyPenalty()), number(row, c.presencePenalty()), seed(row, c.seed()));
            List<String> stop = List.of();
            if (c.stop() >= 0 && !row.isNullAt(c.stop())) {
                stop = c.stopIsArray() ? stops(row.<String>getList(c.stop())) : List.of(nonEmpty(row.getString(c.stop())));
            }
            return new Request(id, prompt, conversation, integer(row, c.maxTokens(), "max_tokens"), sampling, stop,
                    null);
        } catch (Invalid e) {
            return invalid(id, id == null ? e.getMessage() + " (" + brief(row.toString()) + ")" : e.getMessage());
        }
    }

    /** A conversation from (role, content) pairs: nibble batch's rules (OpenAI's "developer" is a system message). */
    private static List<ChatMessage> conversation(List<String[]> pairs) throws Invalid {
        if (pairs.isEmpty()) {
            throw new Invalid("\"messages\" must be a non-empty array of {\"role\", \"content\"}");
        }
        List<ChatMessage> out = new ArrayList<>();
        for (String[] p : pairs) {
            if (p[0] == null || p[1] == null) {
                throw new Invalid("each message needs a string \"role\" and a string \"content\"");
            }
            out.add(new ChatMessage(p[0].equals("developer") ? ChatMessage.SYSTEM : p[0], p[1]));
        }
        if (!out.getLast().role().equals(ChatMessage.USER)) {
            throw new Invalid("the last message must be the user's, to be answered");
        }
        return out;
    }

    private static List<String> stops(List<String> values) throws Invalid {
        List<String> out = new ArrayList<>();
        for (String s : values) {
            if (s == null) {
                throw new Invalid("\"stop\" must be a string or an array of strings");
            }
            out.add(nonEmpty(s));
        }
        return out;
    }

    private static String nonEmpty(String stop) throws Invalid {
        if (stop.isEmpty()) {
            throw new Invalid("a stop string must not be empty");
        }
        return stop;
    }

    private static Integer integer(Row row, int i, String field) throws Invalid {
        if (i < 0 || row.isNullAt(i)) {
            return null;
        }
        long v = ((Number) row.get(i)).longValue();
        if (v != (int) v) {
            throw new Invalid("\"" + field + "\" must be an integer");
        }
        return (int) v;
    }

    private static Long seed(Row row, int i) {
        return i < 0 || row.isNullAt(i) ? null : ((Number) row.get(i)).longValue();
    }

    private static Float number(Row row, int i) {
        if (i < 0 || row.isNullAt(i)) {
            return null;
        }
        Object v = row.get(i);
        return v instanceof BigDecimal d ? d.floatValue() : (float) ((Number) v).doubleValue();
    }

    /**
     * A line Spark's JSON reader could not fit the schema (a string where a number belongs, invalid JSON, or a form
     * it reads more strictly than nibble batch, such as a single string for {@code stop} or text parts for a
     * message's content), read by nibble batch's own rules: it runs if they accept it, else it is an error result
     * saying why, in nibble batch's words. {@code parsedId} is the id Spark read from it, if any.
     */
    static Request fromJson(String line, Object parsedId, DataType idType, ObjectMapper json) {
        JsonNode root;
        try {
            root = json.readTree(line);
        } catch (JsonProcessingException e) {
            return invalid(parsedId, "not valid JSON (" + e.getOriginalMessage() + "): " + brief(line));
        }
        if (root == null || !root.isObject()) {
            return invalid(parsedId, "not a JSON object: " + brief(line));
        }
        JsonNode idNode = root.get("id");
        Object id = id(idNode, idType);
        try {
            if (id == null) {
                throw new Invalid("no \"id\" (a string or an integer) to name the result");
            }
            JsonNode prompt = root.get("prompt");
            JsonNode messages = root.get("messages");
            if ((prompt == null) == (messages == null)) {
                throw new Invalid("give exactly one of \"prompt\" and \"messages\"");
            }
            if (prompt != null && !prompt.isTextual()) {
                throw new Invalid("\"prompt\" must be a string");
            }
            Float rp = number(root, "repetition_penalty");
            Sampling sampling = new Sampling(number(root, "temperature"), integer(root, "top_k"), number(root, "top_p"),
                    number(root, "min_p"), rp != null ? rp : number(root, "repeat_penalty"),
                    number(root, "frequency_penalty"), number(root, "presence_penalty"), longValue(root, "seed"));
            return new Request(id, prompt == null ? null : prompt.asText(),
                    messages == null ? null : messages(messages), integer(root, "max_tokens"), sampling,
                    stops(root.get("stop")), null);
        } catch (Invalid e) {
            return invalid(id, id == null ? e.getMessage() + ": " + brief(line) : e.getMessage());
        }
    }

    /** The id as the id column's type, or null when it is none that type can hold. */
    private static Object id(JsonNode id, DataType type) {
        if (id == null || !(id.isTextual() || id.isIntegralNumber())) {
            return null;
        }
        if (type instanceof StringType) {
            return id.asText();
        }
        if (!id.isIntegralNumber()) {
            return null;
        }
        if (type instanceof IntegerType) {
            return id.canConvertToInt() ? id.intValue() : null;
        }
        return id.canConvertToLong() ? id.longValue() : null;
    }

    private static List<ChatMessage> messages(JsonNode node) throws Invalid {
        if (!node.isArray() || node.isEmpty()) {
            throw new Invalid("\"messages\" must be a non-empty array of {\"role\", \"content\"}");
        }
        List<String[]> pairs = new ArrayList<>();
        for (JsonNode m : node) {
            JsonNode role = m.get("role");
            pairs.add(new String[] {role != null && role.isTextual() ? role.asText() : null, content(m.get("content"))});
        }
        return conversation(pairs);
    }

    /** A message's text: a string, or the text parts of an array joined; null when it is neither. */
    private static String content(JsonNode content) {
        if (content == null) {
            return null;
        }
        if (content.isTextual()) {
            return content.asText();
        }
        if (!content.isArray()) {
            return null;
        }
        StringBuilder text = new StringBuilder();
        for (JsonNode part : content) {
            if (!"text".equals(part.path("type").asText()) || !part.path("text").isTextual()) {
                return null;
            }
            text.append(part.get("text").asText());
        }
        return text.toString();
    }

    private static List<String> stops(JsonNode node) throws Invalid {
        if (node == null || node.isNull()) {
            return List.of();
        }
        if (node.isTextual()) {
            return List.of(nonEmpty(node.asText()));
        }
        if (!node.isArray()) {
            throw new Invalid("\"stop\" must be a string or an array of strings");
        }
        List<String> out = new ArrayList<>();
        for (JsonNode s : node) {
            out.add(s.isTextual() ? s.asText() : null);
        }
        return stops(out);
    }

    private static Integer integer(JsonNode o, String field) throws Invalid {
        JsonNode n = o.get(field);
        if (n == null || n.isNull()) {
            return null;
        }
        if (!n.isIntegralNumber() || !n.canConvertToInt()) {
            throw new Invalid("\"" + field + "\" must be an integer");
        }
        return n.intValue();
    }

    private static Long longValue(JsonNode o, String field) throws Invalid {
        JsonNode n = o.get(field);
        if (n == null || n.isNull()) {
            return null;
        }
        if (!n.isIntegralNumber() || !n.canConvertToLong()) {
            throw new Invalid("\"" + field + "\" must be an integer");
        }
        return n.longValue();
    }

    private static Float number(JsonNode o, String field) throws Invalid {
        JsonNode n = o.get(field);
        if (n == null || n.isNull()) {
            return null;
        }
        if (!n.isNumber()) {
            throw new Invalid("\"" + field + "\" must be a number");
        }
        return n.floatValue();
    }

    /** At most 200 characters of {@code text}, for an error that must show which record it is about. */
    static String brief(String text) {
        String oneLine = text.strip().replace('\n', ' ');
        return oneLine.length() <= 200 ? oneLine : oneLine.substring(0, 200) + "...";
    }

    /** The JSON reader schema of a request line (nibble batch's own form), with {@link #CORRUPT} for what it cannot read. */
    static StructType jsonSchema() {
        return new StructType()
                .add("id", DataTypes.StringType)
                .add("prompt", DataTypes.StringType)
                .add("messages", DataTypes.StringType) // its JSON text: read by nibble batch's rules
                .add("max_tokens", DataTypes.IntegerType)
                .add("temperature", DataTypes.DoubleType)
                .add("top_k", DataTypes.IntegerType)
                .add("top_p", DataTypes.DoubleType)
                .add("min_p", DataTypes.DoubleType)
                .add("repetition_penalty", DataTypes.DoubleType)
                .add("repeat_penalty", DataTypes.DoubleType)
                .add("frequency_penalty", DataTypes.DoubleType)
                .add("presence_penalty", DataTypes.DoubleType)
                .add("seed", DataTypes.LongType)
                .add("stop", DataTypes.createArrayType(DataTypes.StringType))
                .add(CORRUPT, DataTypes.StringType);
    }
}
