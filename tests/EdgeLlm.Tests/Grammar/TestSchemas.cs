namespace EdgeLlm.Tests.Grammar;

/// <summary>The 20 schemas (with a prompt each) the generation tests run on the bundled and a random model.</summary>
internal static class TestSchemas
{
    /// <summary>Bounded: every string, array and number is bounded, so a complete answer is short (the tests expect it to finish).</summary>
    public sealed record Case(string Name, string Schema, string Prompt, bool Bounded = true);

    public static readonly Case[] All =
    [
        new("person", """{"type":"object","properties":{"name":{"type":"string","maxLength":12},"age":{"type":"integer"}},"required":["name","age"],"additionalProperties":false}""", "A person:"),
        new("boolean", """{"type":"boolean"}""", "True or false?"),
        new("int-array", """{"type":"array","items":{"type":"integer"},"minItems":2,"maxItems":4}""", "Some numbers:"),
        new("color-enum", """{"enum":["red","green","blue"]}""", "Pick a color."),
        new("enum-with-null", """{"type":"object","properties":{"color":{"enum":["red","green",null]},"ok":{"type":"boolean"}},"required":["color"]}""", "Describe the ball."),
        new("tags", """{"type":"object","properties":{"tags":{"type":"array","items":{"type":"string","maxLength":6},"maxItems":3}},"required":["tags"],"additionalProperties":false}""", "Tags for the story:"),
        new("number", """{"type":"number"}""", "A number:"),
        new("point", """{"type":"object","properties":{"point":{"type":"object","properties":{"x":{"type":"number"},"y":{"type":"number"}},"required":["x","y"],"additionalProperties":false}},"required":["point"]}""", "Where is the cat?"),
        new("int-or-string", """{"anyOf":[{"type":"integer"},{"type":"string","maxLength":5}]}""", "Answer:"),
        new("tagged-union", """{"oneOf":[{"type":"object","properties":{"kind":{"const":"a"},"n":{"type":"integer"}},"required":["kind","n"],"additionalProperties":false},{"type":"object","properties":{"kind":{"const":"b"},"s":{"type":"string","maxLength":4}},"required":["kind","s"],"additionalProperties":false}]}""", "Kind a or b:"),
        new("nullable-string", """{"type":["string","null"],"maxLength":8}""", "A name, if any:"),
        new("const-object", """{"const":{"version":2,"tags":["x"],"ok":true}}""", "Version:"),
        new("all-optional", """{"type":"object","properties":{"a":{"type":"integer"},"b":{"type":"integer"},"c":{"type":"integer"}},"additionalProperties":false}""", "Some of a, b, c:"),
        new("fixed-length", """{"type":"string","minLength":3,"maxLength":3}""", "Three letters:"),
        new("enum-array", """{"type":"array","items":{"enum":[1,2,3]},"minItems":3,"maxItems":3}""", "Three picks:"),
        new("linked-list", """{"$defs":{"node":{"type":"object","properties":{"v":{"type":"integer"},"next":{"anyOf":[{"type":"null"},{"$ref":"#/$defs/node"}]}},"required":["v","next"],"additionalProperties":false}},"$ref":"#/$defs/node"}""", "A list:", Bounded: false),
        new("bool-map", """{"type":"object","additionalProperties":{"type":"boolean"}}""", "Flags:", Bounded: false),
        new("annotated", """{"title":"Book","type":"object","properties":{"title":{"type":"string","maxLength":10,"description":"the title"},"year":{"type":"integer","format":"int32"}},"required":["title","year"]}""", "A book:"),
        new("empty-array", """{"type":"array","maxItems":0}""", "Nothing:"),
        new("orders", """{"type":"object","properties":{"items":{"type":"array","items":{"type":"object","properties":{"id":{"type":"integer"},"ok":{"type":"boolean"}},"required":["id","ok"],"additionalProperties":false},"minItems":1,"maxItems":2}},"required":["items"],"additionalProperties":false}""", "The order:"),
    ];
}
