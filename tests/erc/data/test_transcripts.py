from erc.data.transcripts import clean_transcript


def test_event_codes_and_marks_removed():
    assert clean_transcript("b/ 그래 l/ 오늘*  회의 +했어 n/") == "그래 오늘 회의 했어"


def test_dual_transcription_keeps_spelling():
    assert clean_transcript("(그러니까)/(그니까) 가자") == "그러니까 가자"


def test_plain_text_unchanged():
    assert clean_transcript("오늘 날씨 좋다.") == "오늘 날씨 좋다."
