"""A short lease read in windows by the GUI tests of long documents (shared by several files)."""

SENTENCES = [
    "The tenant shall pay the rent on the first day of each month.",
    "Late payment incurs a fee of five percent, payable with the next rent.",
    "The landlord keeps the deposit until the keys are returned; damage is deducted.",
    "Either party may end this lease with two months of written notice.",
]
DOCUMENT = " ".join(SENTENCES * 2) + "\n\n" + " ".join(SENTENCES[:2])
