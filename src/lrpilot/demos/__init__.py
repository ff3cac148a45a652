"""Small worked examples that show what the learning rate does (numpy only; their pictures are in
`lrpilot.report`)."""
